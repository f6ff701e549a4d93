"""Publishing the site export: one directory per export, one atomic switch, nothing half-done.

These drive `site.publish` directly with small files; the signal cases against a real
refresh process are in reliability/test_export_signals.py.
"""

import json
import os
from pathlib import Path

import pytest

from choosemypower_dagster.site import publish as publish_module
from choosemypower_dagster.site.publish import (
    ExportError,
    check_writable,
    current_export,
    publish,
    store_of,
)


def _files(version: int, cities: tuple[str, ...] = ("a-tx", "b-tx")) -> dict[str, bytes]:
    files = {f"plans-{c}.json": json.dumps({"plans": [c, version]}).encode() for c in cities}
    files["cities-tx.json"] = json.dumps({"cities": list(cities)}).encode()
    files["build-summary.json"] = json.dumps({"version": version}).encode()
    return files


def _read(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if not p.name.startswith(".")}


def _exports(directory: Path) -> list[str]:
    return sorted(p.name for p in store_of(directory).iterdir() if not p.name.startswith("."))


def test_each_export_has_its_own_directory_and_one_link_names_the_current(tmp_path: Path):
    site = tmp_path / "site-data"
    first = publish(site, _files(1))
    assert site.is_symlink() and not os.path.isabs(os.readlink(site))  # relocatable
    assert site.resolve() == first.export_dir and _read(site) == _files(1)
    assert first.written == len(_files(1))

    second = publish(site, _files(2))
    assert site.resolve() == second.export_dir and _read(site) == _files(2)
    # The previous export stays for readers that resolved the link before the switch.
    assert _exports(site) == sorted([first.export_dir.name, second.export_dir.name])
    assert _read(first.export_dir) == _files(1)

    third = publish(site, _files(3))
    assert _exports(site) == sorted([second.export_dir.name, third.export_dir.name])
    assert first.export_dir.name in third.pruned


def test_unchanged_files_are_hard_links_to_the_previous_export(tmp_path: Path):
    site = tmp_path / "site-data"
    first = publish(site, _files(1))
    files = _files(1) | {"build-summary.json": b'{"version":2}'}
    second = publish(site, files)
    assert second.written == 1
    for name in files:
        same = (first.export_dir / name).stat().st_ino == (second.export_dir / name).stat().st_ino
        assert same == (name != "build-summary.json"), name


def test_dropped_plan_files_are_reported_not_carried_over(tmp_path: Path):
    site = tmp_path / "site-data"
    publish(site, _files(1, ("a-tx", "b-tx")))
    result = publish(site, _files(1, ("a-tx",)))
    assert result.removed == ["plans-b-tx.json"]
    assert "plans-b-tx.json" not in _read(site)


def test_a_write_failure_leaves_the_previous_export_current_and_no_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    site = tmp_path / "site-data"
    first = publish(site, _files(1))

    def full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(publish_module, "_write_new", full)
    with pytest.raises(ExportError, match="No space left on device") as caught:
        publish(site, _files(2))
    assert "CHOOSEMYPOWER_EXPORT_DIR" in str(caught.value)
    assert site.resolve() == first.export_dir and _read(site) == _files(1)
    assert sorted(p.name for p in store_of(site).iterdir()) == [".lock", first.export_dir.name]


def test_a_flush_failure_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Files written but not made durable (an I/O error on the flush) are never switched in."""
    site = tmp_path / "site-data"
    first = publish(site, _files(1))

    def failing(directory: Path, written: list[Path]) -> None:
        assert written and all(p.parent == directory for p in written)
        raise OSError(5, "Input/output error", str(directory))

    monkeypatch.setattr(publish_module, "_flush", failing)
    with pytest.raises(ExportError, match="Input/output error"):
        publish(site, _files(2))
    assert site.resolve() == first.export_dir and _read(site) == _files(1)
    assert sorted(p.name for p in store_of(site).iterdir()) == [".lock", first.export_dir.name]


def test_files_are_flushed_whether_or_not_syncfs_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Without syncfs(2) each new file is fsynced; either way the export is whole."""
    monkeypatch.setattr(publish_module, "_syncfs", lambda directory: False)
    synced: list[int] = []
    real_fsync = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(publish_module.os, "fsync", counting)
    site = tmp_path / "site-data"
    publish(site, _files(1))
    assert _read(site) == _files(1)
    assert len(synced) >= len(_files(1))  # one per file, plus the directories


@pytest.mark.parametrize("where", ["_write_new", "_switch"])
def test_an_interrupt_anywhere_leaves_one_whole_export_and_the_next_one_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
):
    """KeyboardInterrupt/SystemExit (what a signal handler raises) is not an OSError: nothing
    must depend on catching it. The next export removes what was left."""
    site = tmp_path / "site-data"
    first = publish(site, _files(1))
    real = getattr(publish_module, where)

    def interrupted(*args, **kwargs):
        if where == "_switch":
            # Interrupted after the new link was made, before it was renamed over the old one.
            directory, store, export_id = args
            os.symlink(
                f"{store.name}/{export_id}",
                directory.with_name(f".{directory.name}.link-{export_id}"),
            )
        raise KeyboardInterrupt

    monkeypatch.setattr(publish_module, where, interrupted)
    with pytest.raises(KeyboardInterrupt):
        publish(site, _files(2))
    assert site.resolve() == first.export_dir and _read(site) == _files(1)
    leftovers = [p.name for p in store_of(site).iterdir() if p.name not in (".lock",)]
    assert len(leftovers) == 2  # the previous export and the interrupted one's directory

    monkeypatch.setattr(publish_module, where, real)
    third = publish(site, _files(3))
    assert _read(site) == _files(3)
    assert _exports(site) == sorted([first.export_dir.name, third.export_dir.name])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site-data.link-")]
    assert not [p for p in store_of(site).iterdir() if p.name.startswith(".staging-")]


def test_a_directory_of_the_earlier_layout_is_switched_for_the_link(tmp_path: Path):
    site = tmp_path / "site-data"
    site.mkdir()
    for name, data in _files(1).items():  # what the earlier, rename-in-place export left
        (site / name).write_bytes(data)
    (site / ".staging-abandoned").mkdir()

    second = publish(site, _files(1) | {"build-summary.json": b"{}"})
    assert site.is_symlink() and _read(site) == _files(1) | {"build-summary.json": b"{}"}
    assert second.written == 1  # the rest hard-linked from the old directory
    legacy = [n for n in _exports(site) if n.startswith("legacy-")]
    assert len(legacy) == 1 and _read(store_of(site) / legacy[0]) == _files(1)

    publish(site, _files(2))
    assert not [n for n in _exports(site) if n.startswith("legacy-")]  # pruned in turn


def test_current_export_and_writability(tmp_path: Path):
    site = tmp_path / "site-data"
    assert current_export(site) is None
    check_writable(site)
    publish(site, _files(1))
    assert current_export(site) == site.resolve()

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="CHOOSEMYPOWER_EXPORT_DIR"):
        check_writable(blocker / "site-data")
    with pytest.raises(ValueError, match="plain file name"):
        publish(site, {"../escape.json": b"{}"})
