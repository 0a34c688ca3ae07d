from __future__ import annotations

import pytest
from redzone_check.hooks.github_diff import PullDiff, parse_patch, repo_path

# Lines 10-16 of the new file: 12 and 13 added, 11 removed on the old side; line 40 added in a second hunk.
PATCH = """\
@@ -10,5 +10,6 @@ int f(void)
 context10
-old11
+new11
+new12
 context13
 context14
 context15
@@ -39,2 +40,3 @@ int g(void)
 context40
+new41
 context42
\\ No newline at end of file"""


def test_patch_gives_added_lines_and_every_line_shown_in_hunks() -> None:
    added, shown = parse_patch(PATCH)
    assert added == {11, 12, 41}
    assert shown == {10, 11, 12, 13, 14, 15, 40, 41, 42}


def test_binary_file_without_patch_has_no_commentable_line_but_is_changed() -> None:
    diff = PullDiff.from_files([("build/unit.o", "modified", None)])
    assert diff.changed("build/unit.o")
    assert not diff.commentable("build/unit.o", 1)


def test_removed_files_cannot_be_commented() -> None:
    diff = PullDiff.from_files([("gone.c", "removed", "@@ -1,1 +0,0 @@\n-x")])
    assert not diff.changed("gone.c")


@pytest.mark.parametrize(
    ("mode", "line", "expected"),
    [
        ("added", 12, True),
        ("added", 13, False),  # context only
        ("diff_context", 13, True),
        ("diff_context", 30, False),  # between hunks
        ("file", 30, True),
        ("nofilter", 30, True),
    ],
)
def test_filter_modes_follow_reviewdog(mode: str, line: int, expected: bool) -> None:
    diff = PullDiff.from_files([("src/a.c", "modified", PATCH)])
    assert diff.selects("src/a.c", line, mode) is expected


def test_files_outside_the_diff_are_selected_only_by_nofilter() -> None:
    diff = PullDiff.from_files([("src/a.c", "modified", PATCH)])
    assert [m for m in ("added", "diff_context", "file", "nofilter") if diff.selects("src/b.c", 1, m)] == [
        "nofilter"
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("src/a.c", "src/a.c"),
        ("./src/a.c", "src/a.c"),
        ("build/../src/a.c", "src/a.c"),
        ("/home/runner/work/w/w/src/a.c", "src/a.c"),
        ("/usr/include/stdio.h", None),
        ("../outside.c", None),
        ("/home/runner/work/w/w", None),
        (None, None),
    ],
)
def test_repo_path_maps_engine_paths_to_pull_request_paths(path: str | None, expected: str | None) -> None:
    assert repo_path(path, "/home/runner/work/w/w") == expected
