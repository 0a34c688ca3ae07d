"""The Action reads the CLI's `--json` back into the model: every value must survive the trip."""

from __future__ import annotations

import json
import subprocess

from conftest import require_tool
from data_ocaml.project import built_project, objects
from redzone_check.hooks.result_json import load_result

from redzone_check.options import ScanOptions
from redzone_check.scan import scan


def test_json_document_loads_back_into_the_same_scan_result() -> None:
    require_tool("gcc")
    project = built_project()
    built = objects(project)
    libgcc = subprocess.run(["gcc", "-print-libgcc-file-name"], capture_output=True, text=True, check=True)
    paths = [str(built["stubs_archive"]), str(built["ocaml_archive"]), libgcc.stdout.strip()]
    result = scan(paths, ScanOptions(jobs=1, use_cache=False, source_root=str(project)))
    # What the comparison must cover: OCaml reach, build-file lines, recorded flags, no-DWARF notes.
    assert any(f.reached_from for f in result.findings)
    assert any(f.build_location for f in result.findings)
    assert any(f.build and f.build.recorded for f in result.findings)
    assert any(f.build and not f.build.recorded for f in result.findings)

    document = json.loads(json.dumps(result.to_json("0")))

    assert load_result(document, source_root=result.source_root) == result
