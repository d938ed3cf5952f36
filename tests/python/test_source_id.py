"""scripts/source-id: the name result metadata gives the source tree, in a throw-away git repository."""

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "source-id")

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def source_id(repo):
    return subprocess.run(["bash", SCRIPT, str(repo)], check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path):
    path.mkdir()
    git(path, "init", "-q")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "test")
    (path / ".gitignore").write_text("build/\n")
    (path / "kernel.cu").write_text("first\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return path


def test_clean_checkout_is_its_short_commit(tmp_path):
    repo = make_repo(tmp_path / "repo")
    assert source_id(repo) == git(repo, "rev-parse", "--short", "HEAD")


def test_outside_git_is_unknown(tmp_path):
    (tmp_path / "plain").mkdir()
    assert source_id(tmp_path / "plain") == "unknown"


def test_changed_files_name_their_tree_and_leave_the_checkout_alone(tmp_path):
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "--short", "HEAD")
    (repo / "kernel.cu").write_text("second\n")
    (repo / "new.cu").write_text("new\n")          # untracked, not ignored: part of the tree
    (repo / "build").mkdir()
    (repo / "build" / "out.o").write_text("x\n")   # ignored: not part of it
    status_before = git(repo, "status", "--porcelain")
    name = source_id(repo)
    assert name.startswith(head + "-dirty-tree-")
    assert git(repo, "status", "--porcelain") == status_before  # index and work tree untouched
    assert git(repo, "rev-parse", "--short", "HEAD") == head
    # Committing exactly those files gives a commit whose tree is the one named.
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")
    tree = name.rsplit("-", 1)[1]
    assert git(repo, "rev-parse", "HEAD^{tree}").startswith(tree)
    assert source_id(repo) == git(repo, "rev-parse", "--short", "HEAD")


def test_files_newer_than_the_git_metadata_still_name_their_commit(tmp_path):
    # The device machine's case: the files of a later commit over the .git of an earlier one.
    repo = make_repo(tmp_path / "repo")
    stale = tmp_path / "stale"
    git(tmp_path, "clone", "-q", str(repo), str(stale))
    (repo / "kernel.cu").write_text("second\n")
    (repo / "added.cu").write_text("added\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")
    for name in ("kernel.cu", "added.cu"):
        shutil.copy(repo / name, stale / name)
    name = source_id(stale)
    assert name.startswith(git(stale, "rev-parse", "--short", "HEAD") + "-dirty-tree-")
    assert git(repo, "rev-parse", "HEAD^{tree}").startswith(name.rsplit("-", 1)[1])
