"""Intake pieces without a daemon: ignore rules, walking, network filesystem detection."""

from __future__ import annotations

from pathlib import Path

from watcher.config import DEFAULT_IGNORE
from watcher.intake import PathFilter, is_network_fs, mount_fstype, observer_kind, walk_files

MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
server:/export /mnt/nas nfs4 rw,vers=4.2 0 0
//host/share /mnt/smb\\040share cifs rw 0 0
sshfs#me@host: /mnt/fuse fuse.sshfs rw 0 0
tmpfs /mnt/nas/local tmpfs rw 0 0
"""


def test_ignore_patterns_match_each_component(tmp_path: Path) -> None:
    rules = PathFilter(DEFAULT_IGNORE, excluded=(tmp_path / "out",))
    ok = tmp_path / "a" / "face.jpg"
    assert rules.accepts(ok, tmp_path)
    for bad in (
        ".DS_Store",
        "._face.jpg",
        "Thumbs.db",
        "thumbs.db",
        "@eaDir/face.jpg",
        "face.jpg.part",
        "face.jpg.crdownload",
        "x.tmp",
        ".hidden.jpg",
        "sub/.git/face.jpg",
    ):
        assert not rules.accepts(tmp_path / bad, tmp_path), bad
    assert not rules.accepts(tmp_path / "out" / "ai" / "face.jpg", tmp_path)
    assert not rules.accepts(Path("/elsewhere/face.jpg"), tmp_path)


def test_walk_streams_files_skipping_ignored_and_output(tmp_path: Path) -> None:
    for rel in ("a.jpg", "sub/b.jpg", "sub/deeper/c.jpg", "@eaDir/d.jpg", "out/ai/e.jpg", ".x.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "linkdir").symlink_to(tmp_path / "sub")
    found = sorted(
        str(p.relative_to(tmp_path))
        for p in walk_files(tmp_path, PathFilter(DEFAULT_IGNORE, excluded=(tmp_path / "out",)))
    )
    # The symlinked folder is listed as an entry (and rejected later), never followed.
    assert found == ["a.jpg", "linkdir", "sub/b.jpg", "sub/deeper/c.jpg"]


def test_mount_detection_picks_the_longest_mount_point() -> None:
    assert mount_fstype(Path("/mnt/nas/photos"), MOUNTS) == "nfs4"
    assert mount_fstype(Path("/mnt/nas/local/x"), MOUNTS) == "tmpfs"
    assert mount_fstype(Path("/mnt/smb share/in"), MOUNTS) == "cifs"
    assert mount_fstype(Path("/home/me"), MOUNTS) == "ext4"
    assert is_network_fs("fuse.sshfs") and is_network_fs("nfs") and is_network_fs("9p")
    assert not is_network_fs("ext4") and not is_network_fs(None)


def test_observer_kind_auto_polls_network_shares() -> None:
    assert observer_kind("auto", Path("/mnt/nas/in"), MOUNTS) == "polling"
    assert observer_kind("auto", Path("/mnt/fuse/in"), MOUNTS) == "polling"
    assert observer_kind("auto", Path("/srv/in"), MOUNTS) == "native"
    assert observer_kind("polling", Path("/srv/in"), MOUNTS) == "polling"
    assert observer_kind("native", Path("/mnt/nas/in"), MOUNTS) == "native"
