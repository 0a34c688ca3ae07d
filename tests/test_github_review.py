"""The review poster, with the real PyGithub client against the fake GitHub server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fake_github import Fake, FakeServer, make_finding, rate_limited
from github import Auth, Github
from openapi_github import Operations
from redzone_check.hooks.github_comments import fix, markers
from redzone_check.hooks.github_event import PullRef
from redzone_check.hooks.github_retry import ReviewUnavailable
from redzone_check.hooks.github_review import post_review

from redzone_check.model import BuildLocation, Reach

HEAD = "a" * 40
WORKSPACE = "/home/runner/work/widgets/widgets"
PULL = PullRef("octo/widgets", 7, HEAD, "octo/widgets")
# src/leaf.c shows lines 10-15 in its hunk; 12 is added. Line 30 is outside the hunk.
LEAF_PATCH = "@@ -10,5 +10,6 @@\n ten\n eleven\n+twelve\n thirteen\n fourteen\n fifteen"
MAKE_PATCH = "@@ -1,2 +1,2 @@\n CC = gcc\n-CFLAGS = -O1 -g\n+CFLAGS = -O2 -g"
FILES = [
    ("src/leaf.c", "modified", LEAF_PATCH),
    ("Makefile", "modified", MAKE_PATCH),
    ("README", "added", "@@ -0,0 +1 @@\n+x"),
]


@pytest.fixture
def fake(github_ops: Operations) -> Iterator[Fake]:
    server = FakeServer(github_ops)
    server.fake.add_pull(7, HEAD, FILES)
    yield server.fake
    server.close()
    assert server.fake.violations == []


def client(fake: Fake) -> Github:
    return Github(
        auth=Auth.Token("ghs_secret"),
        base_url=fake.base_url,
        retry=None,
        per_page=2,  # so that pulls/files and the comment lists are paginated
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def review(fake: Fake, findings: list, mode: str = "nofilter", sleeps: list[float] | None = None):  # type: ignore[no-untyped-def, type-arg]
    return post_review(
        client(fake), PULL, findings, mode, WORKSPACE, (sleeps if sleeps is not None else []).append
    )


def posts(fake: Fake) -> int:
    return len([r for r in fake.requests if r[0] in ("POST", "PATCH", "PUT", "DELETE")])


INLINE = make_finding("leaf", ("src/leaf.c", 12))
FILE_LEVEL = make_finding("far_away", ("src/leaf.c", 30))
ELSEWHERE = make_finding("vendored", ("vendor/lib.c", 5), path="vendor/lib.o")


def test_first_run_posts_one_review_with_inline_file_level_and_body_findings(fake: Fake) -> None:
    outcome = review(fake, [INLINE, FILE_LEVEL, ELSEWHERE])
    assert (outcome.inline, outcome.file_level, outcome.body) == (1, 1, 1)
    [posted] = fake.reviews.values()
    assert "vendored" in posted["body"] and markers(posted["body"])[0].fingerprint == ELSEWHERE.fingerprint
    by_line = {(c["path"], c["line"], c["subject_type"]): c["body"] for c in fake.comments.values()}
    assert set(by_line) == {("src/leaf.c", 12, "line"), ("src/leaf.c", None, "file")}
    inline = by_line["src/leaf.c", 12, "line"]
    for part in (
        "**leaf**",
        "movl %ecx, -0x28(%rsp, %rdx, 4)",
        "build/leaf.o",
        "GCC 12.2.0",
        "-mno-red-zone",
    ):
        assert part in inline
    assert markers(inline)[0].key == (INLINE.fingerprint, "source")
    assert all(c["commit_id"] == HEAD for c in fake.comments.values())


def test_rerun_posts_nothing_new(fake: Fake) -> None:
    review(fake, [INLINE, FILE_LEVEL, ELSEWHERE])
    before = (posts(fake), len(fake.comments), len(fake.reviews))
    outcome = review(fake, [INLINE, FILE_LEVEL, ELSEWHERE])
    assert (posts(fake), len(fake.comments), len(fake.reviews)) == before
    assert not outcome.review_posted


def test_fixed_finding_comment_and_body_entry_say_fixed(fake: Fake) -> None:
    review(fake, [INLINE, FILE_LEVEL, ELSEWHERE])
    outcome = review(fake, [FILE_LEVEL])
    assert outcome.fixed == 1
    [inline] = [c for c in fake.comments.values() if c["line"] == 12]
    assert inline["body"].startswith(f"**Fixed** in {HEAD[:12]}")
    assert markers(inline["body"])[0].fixed
    [posted] = fake.reviews.values()
    assert "**fixed:** ~~" in posted["body"] and markers(posted["body"])[0].fixed
    untouched = [c for c in fake.comments.values() if c["subject_type"] == "file"]
    assert "Fixed" not in untouched[0]["body"]


def test_read_only_token_raises_review_unavailable(fake: Fake) -> None:
    fake.read_only = True
    with pytest.raises(ReviewUnavailable, match="403"):
        review(fake, [INLINE])
    assert fake.comments == {}


def test_server_errors_and_rate_limits_are_retried_with_backoff(fake: Fake) -> None:
    fake.inject += [(502, {}), (503, {}), rate_limited()]
    sleeps: list[float] = []
    outcome = review(fake, [INLINE], sleeps=sleeps)
    assert outcome.inline == 1
    assert sleeps[:2] == [1.0, 2.0]
    assert 1.0 <= sleeps[2] <= 3.0  # until x-ratelimit-reset, about two seconds ahead


def test_absolute_and_dotted_paths_map_to_the_pull_request_files(fake: Fake) -> None:
    absolute = make_finding(
        "leaf", (f"{WORKSPACE}/src/leaf.c", 12), path=f"{WORKSPACE}/build/../build/leaf.o"
    )
    outcome = review(fake, [absolute], mode="added")
    assert outcome.inline == 1
    assert [c["path"] for c in fake.comments.values()] == ["src/leaf.c"]


def test_build_file_line_in_the_diff_gets_its_own_comment(fake: Fake) -> None:
    where = BuildLocation("Makefile", 2, "make", "CFLAGS = -O2 -g")
    finding = make_finding("leaf", ("src/other.c", 3), build_location=where)
    outcome = review(fake, [finding], mode="added")
    assert outcome.inline == 1 and outcome.body == 1  # the source line is not in the PR
    [comment] = fake.comments.values()
    assert (comment["path"], comment["line"]) == ("Makefile", 2)
    assert "add `-mno-red-zone` to `CFLAGS = -O2 -g` in `Makefile:2`" in comment["body"]


def test_fix_for_a_dune_stanza_without_flags_adds_a_flags_field() -> None:
    # The same advice as the text report (BuildLocation.advice), in Markdown.
    stanza = "(foreign_stubs (language c) (names mystub))"
    finding = make_finding(
        "helper", ("src/mystub.c", 10), build_location=BuildLocation("src/dune", 5, "dune", stanza)
    )
    assert fix(finding) == f"add `(flags :standard -mno-red-zone)` to `{stanza}` in `src/dune:5`."
    assert finding.build_location is not None
    assert finding.build_location.advice() == f"add (flags :standard -mno-red-zone) to {stanza} in src/dune:5"


def test_ocaml_caller_line_in_the_diff_gets_a_comment_naming_the_chain(fake: Fake) -> None:
    caller = Reach("Cipher.encrypt", "ocaml", "src/leaf.c", 13, ("mc_aes_enc",), "caller")
    finding = make_finding("mc_aes_enc_generic", ("vendor/aes.c", 40), reached_from=(caller,))
    review(fake, [finding], mode="diff_context")
    [comment] = fake.comments.values()
    assert comment["line"] == 13
    assert "**Cipher.encrypt**" in comment["body"] and "via `mc_aes_enc`" in comment["body"]


def test_changed_object_without_source_gets_a_file_level_comment(fake: Fake) -> None:
    fake.add_pull(7, HEAD, [*FILES, ("prebuilt/libfoo.a", "modified", None)])
    finding = make_finding("foo", None, path="prebuilt/libfoo.a")
    outcome = review(fake, [finding], mode="added")
    assert outcome.file_level == 1
    [comment] = fake.comments.values()
    assert (comment["path"], comment["subject_type"]) == ("prebuilt/libfoo.a", "file")


@pytest.mark.parametrize(
    ("mode", "expected"), [("added", 1), ("diff_context", 2), ("file", 3), ("nofilter", 4)]
)
def test_filter_mode_decides_which_findings_belong(fake: Fake, mode: str, expected: int) -> None:
    findings = [
        make_finding("added_line", ("src/leaf.c", 12)),
        make_finding("context_line", ("src/leaf.c", 14)),
        make_finding("same_file", ("src/leaf.c", 30)),
        make_finding("other_file", ("src/other.c", 1)),
    ]
    assert review(fake, findings, mode=mode).belonging == expected


def test_comments_over_the_limit_are_listed_in_the_review_body(fake: Fake) -> None:
    findings = [make_finding(f"f{i}", ("src/leaf.c", 30)) for i in range(33)]
    outcome = review(fake, findings, mode="file")
    assert (outcome.file_level, outcome.body) == (30, 3)
    [posted] = fake.reviews.values()
    assert "Over the limit of 30 comments" in posted["body"]
    assert len(markers(posted["body"])) == 3


def test_symbol_names_cannot_inject_markdown(fake: Fake) -> None:
    evil = make_finding("x](https://evil.example)<img src=x>", ("src/leaf.c", 12))
    review(fake, [evil])
    [comment] = fake.comments.values()
    outside_code = re.sub(r"`[^`\n]*`", "", comment["body"])
    assert "evil.example" in outside_code  # the name is shown, as text
    assert not re.search(r"(?<!\\)(\]\(|<img)", outside_code)


def test_fake_rejects_fields_that_github_does_not_define(fake: Fake) -> None:
    import requests

    url = f"{fake.base_url}/repos/octo/widgets/pulls/7/comments"
    body = {"body": "x", "commit_id": HEAD, "path": "src/leaf.c", "line": 12, "subject": "line"}
    answer = requests.post(url, json=body, headers={"Authorization": "token t"}, timeout=5)
    assert answer.status_code == 422
    assert fake.violations and "'subject' was unexpected" in fake.violations[0]
    assert fake.comments == {}
    fake.violations.clear()


def test_fake_answers_422_for_a_line_outside_the_diff(fake: Fake) -> None:
    with pytest.raises(Exception, match="422"):
        client(fake).get_repo("octo/widgets").get_pull(7).create_review_comment(
            "x", HEAD, "src/leaf.c", line=30, side="RIGHT"
        )
