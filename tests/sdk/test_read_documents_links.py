"""Indexing a folder never follows a symbolic link out of it unless asked (issue 14: a link
to ``/etc/hostname`` inside the folder was uploaded)."""

from __future__ import annotations

from pathlib import Path

from somaagent.sdk._memory_calls import read_documents


def test_links_out_of_the_folder_are_skipped_unless_asked(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the tree")
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# A\n\ninside")
    (folder / "sub" / "b.txt").write_text("inside too")
    (folder / "leak.txt").symlink_to(outside)
    (folder / "alias.md").symlink_to(folder / "a.md")  # a link that stays inside is fine
    (folder / "linked").symlink_to(tmp_path, target_is_directory=True)

    ids = sorted(d.id for d in read_documents(folder))
    assert ids == ["a.md", "alias.md", "sub/b.txt"]
    assert all("outside the tree" not in d.text for d in read_documents(folder))

    followed = sorted(d.id for d in read_documents(folder, follow_links=True))
    assert "leak.txt" in followed
