"""Readable names for C++, Rust and OCaml symbols; real symbols taken from objects at test time."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import require_tool, run

from redzone_check.attribution.demangle import demangle


@pytest.mark.parametrize(
    ("symbol", "name", "language"),
    [
        # OCaml 4.x, dune-wrapped libraries, operators and primes (names seen in Debian's stdlib.a)
        ("camlFoo__bar_123", "Foo.bar", "ocaml"),
        ("camlStdlib__List__map_12", "Stdlib.List.map", "ocaml"),
        ("camlStdlib__Bytes__index_from_opt_368", "Stdlib.Bytes.index_from_opt", "ocaml"),
        ("camlStdlib__Buffer__add_utf_16le_uchar_366", "Stdlib.Buffer.add_utf_16le_uchar", "ocaml"),
        ("camlOps__$2b$21_81", "Ops.( +! )", "ocaml"),
        ("camlStdlib__$5e$5e_444", "Stdlib.( ^^ )", "ocaml"),
        ("camlStdlib__$40_197", "Stdlib.( @ )", "ocaml"),
        ("camlCamlinternalFormat__k$27_3451", "CamlinternalFormat.k'", "ocaml"),
        ("camlStdlib__Printexc__handle_uncaught_exception$27_493",
         "Stdlib.Printexc.handle_uncaught_exception'", "ocaml"),
        ("camlMy_lib__Sub_mod__run_7", "My_lib.Sub_mod.run", "ocaml"),
        ("camlStdlib__Sys__Make_184", "Stdlib.Sys.Make", "ocaml"),
        # module-level symbols and anonymous functions (which keep their stamp: nothing else names them)
        ("camlFoo__code_begin", "Foo.code_begin", "ocaml"),
        ("camlStdlib__Either__entry", "Stdlib.Either.entry", "ocaml"),
        ("camlFoo__fun_1234", "Foo.fun_1234", "ocaml"),
        ("camlFoo", "Foo", "ocaml"),
        # OCaml 5
        ("camlFoo.bar_123", "Foo.bar", "ocaml"),
        ("camlFoo$bar_123", "Foo.bar", "ocaml"),
        ("camlStdlib__List.map_12", "Stdlib.List.map", "ocaml"),
        ("camlFoo.Bar.baz_3", "Foo.Bar.baz", "ocaml"),
        ("camlFoo$$2b_3", "Foo.( + )", "ocaml"),
        ("camlFoo__anon_fn$5bfoo$2eml$3a3$2c8$2d$2d20$5d_123", "Foo.anon_fn[foo.ml:3,8--20]", "ocaml"),
        # the runtime is C; ocamlopt's own glue keeps its name too
        ("caml_alloc_shr", "caml_alloc_shr", "c"),
        ("caml_MD5Transform", "caml_MD5Transform", "c"),
        ("caml_curry3_2", "caml_curry3_2", "ocaml"),
        # C++ and Rust
        ("_ZN3foo3barEv", "foo::bar()", "c++"),
        ("_ZNSt6vectorIiSaIiEE9push_backERKi",
         "std::vector<int, std::allocator<int> >::push_back(int const&)", "c++"),
        ("_Z3foov.isra.0", "foo() [clone .isra.0]", "c++"),
        ("_Zbogus", "_Zbogus", "c++"),
        ("_ZN4core3fmt9Formatter3pad17h1234567890abcdefE", "core::fmt::Formatter::pad", "rust"),
        ("_ZN3std2rt10lang_start28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE",
         "std::rt::lang_start::{{closure}}", "rust"),
        ("_RNvCs1234_7mycrate3foo", "mycrate::foo", "rust"),
        ("_RNvNtCs1234_7mycrate6module4func", "mycrate::module::func", "rust"),
        # C stays C
        ("memcpy", "memcpy", "c"),
        ("__udivti3", "__udivti3", "c"),
        ("camlfoo_helper", "camlfoo_helper", "ocaml"),
    ],
)  # fmt: skip
def test_demangles(symbol: str, name: str, language: str) -> None:
    assert demangle(symbol) == (name, language)


def test_every_function_of_ocaml_stdlib_reads_as_module_dot_name() -> None:
    require_tool("ocamlopt")
    stdlib = Path(run(["ocamlopt", "-where"]).stdout.strip()) / "stdlib.a"
    symbols = [line.split()[2] for line in run(["nm", stdlib]).stdout.splitlines() if " T caml" in line]
    assert len(symbols) > 1000
    for symbol in symbols:
        name, language = demangle(symbol)
        if symbol.startswith("caml_"):
            assert name == symbol
            continue
        assert language == "ocaml" and re.fullmatch(r"[A-Z][\w']*(\.[A-Z][\w']*)*\.(\S+|\( \S+ \))", name), (
            symbol
        )
        assert not re.search(r"\$[0-9a-f]{2}", name), symbol
        if "__fun_" not in symbol:
            assert not re.search(r"_\d+$", name), symbol


def test_ocaml_names_from_ocamlopt_output(tmp_path: Path) -> None:
    require_tool("ocamlopt")
    (tmp_path / "ops.ml").write_text(
        "let ( +! ) a b = a + b + 1\nlet twice f x = f (f x)\nlet g = twice (fun x -> x +! 2)\n"
    )
    run(["ocamlopt", "-c", "ops.ml"], cwd=tmp_path)
    names = {
        demangle(line.split()[2])[0]
        for line in run(["nm", tmp_path / "ops.o"]).stdout.splitlines()
        if " T " in line
    }
    assert {"Ops.( +! )", "Ops.twice", "Ops.entry"} <= names
    assert any(re.fullmatch(r"Ops\.fun_\d+", n) for n in names)


def test_ocaml5_symbol_forms_survive_the_assembler(assemble: Callable[..., Path]) -> None:
    source = '.text\n.globl "camlFoo.bar_123"\n"camlFoo.bar_123":\n  ret\n'
    obj = assemble(source + ".globl camlFoo$baz_7\ncamlFoo$baz_7:\n  ret\n")
    symbols = [line.split()[2] for line in run(["nm", obj]).stdout.splitlines()]
    assert sorted(demangle(s)[0] for s in symbols) == ["Foo.bar", "Foo.baz"]


def test_cplusplus_agrees_with_cxxfilt(tmp_path: Path) -> None:
    require_tool("clang")
    src, obj = tmp_path / "t.cc", tmp_path / "t.o"
    src.write_text(
        "namespace n { template <class T> struct B { T v; T get() const; };\n"
        "template <class T> T B<T>::get() const { return v; }\n"
        "template struct B<long>; int f(int (*g)(char), const char *s) { return g(*s); } }\n"
    )
    run(["clang", "-x", "c++", "-c", "-o", obj, src])
    symbols = [
        line.split()[-1] for line in run(["nm", obj]).stdout.splitlines() if re.search(r" [TW] _Z", line)
    ]
    assert len(symbols) >= 2
    expected = run(["c++filt", *symbols]).stdout.splitlines()
    assert [demangle(s) for s in symbols] == [(e, "c++") for e in expected]
