"""`external` declarations and `let` lines read from OCaml sources."""

from __future__ import annotations

from pathlib import Path

from data_ocaml.project import HERE

from redzone_check.attribution.ocaml_externals import External, ExternalIndex, parse

SOURCE = """\
(* external fake : int = "nope" (* nested "external x : y = \\"z\\"" *) *)
let s = "external in_string : int = \\"no\\""
let c = '"'
external my_sum :
  (int [@untagged]) -> (int [@untagged]) -> (int [@untagged])
  = "mystub_byte" "mystub"
  [@@noalloc]
external alloc_thing : int -> int array = "mystub_alloc"
external legacy : float -> float = "legacy_byte" "legacy_native" "noalloc"
module Inner = struct
  external ( +! ) : int -> int -> int = "plus_stub" [@@ocaml.noalloc]
  let helper x = x
end
let q = {|external quoted : int = "quoted"|}
external fma : (float [@unboxed]) -> (float [@unboxed]) -> (float [@unboxed])
  = "fma_byte" "fma_native" [@@unboxed] [@@noalloc]
let encrypt a b = a + b
"""


def test_parse_finds_every_declaration_and_nothing_in_comments_or_strings() -> None:
    externals, _ = parse(SOURCE, "T", "t.ml")
    assert externals == [
        External("T.my_sum", "t.ml", 4, "mystub_byte", "mystub", True),
        External("T.alloc_thing", "t.ml", 8, "mystub_alloc", "mystub_alloc", False),
        External("T.legacy", "t.ml", 9, "legacy_byte", "legacy_native", True),
        External("T.Inner.( +! )", "t.ml", 11, "plus_stub", "plus_stub", True),
        External("T.fma", "t.ml", 15, "fma_byte", "fma_native", True),
    ]


def test_parse_records_let_lines_with_module_paths() -> None:
    _, lets = parse(SOURCE, "T", "t.ml")
    assert lets["T.encrypt"] == 17
    assert lets["T.Inner.helper"] == 12
    assert "T.fake" not in lets and "T.quoted" not in lets


def test_index_scans_sources_skipping_build_directories(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "native.ml").write_text('external f : int -> int = "f_stub"\n')
    (tmp_path / "lib" / "native.mli").write_text('external f : int -> int = "f_stub"\n')
    (tmp_path / "_build" / "default" / "lib").mkdir(parents=True)
    (tmp_path / "_build" / "default" / "lib" / "native.ml").write_text('external f : int -> int = "f_stub"\n')
    index = ExternalIndex.scan(str(tmp_path))
    assert index.by_stub("f_stub") == (External("Native.f", "lib/native.ml", 1, "f_stub", "f_stub", False),)
    assert index.by_stub("other") == ()


def test_index_of_the_dune_project_maps_both_stub_names_and_definitions() -> None:
    index = ExternalIndex.scan(str(HERE))
    (by_native,) = index.by_stub("mystub")
    assert (by_native.name, by_native.file, by_native.line, by_native.noalloc) == (
        "Cipher.Native.my_sum",
        "src/native.ml",
        4,
        True,
    )
    assert index.by_stub("mystub_byte") == (by_native,)
    assert index.definition("Cipher.Cipher_block.encrypt") == ("src/cipher_block.ml", 3)
    assert index.definition("Cipher.Cipher_block.missing") is None
