"""Writing output files (advgrad/io/files.py): atomic for regular files, never replacing a special
file, keeping a replaced file's mode and giving new files the umask's."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest
import torch
from special_files import FifoReader, is_null_device, null_device
from typer.testing import CliRunner

from advgrad.cli import app
from advgrad.core.errors import UsageError
from advgrad.io.files import atomic_path, write_json, write_tensors, write_text

runner = CliRunner()


@pytest.fixture
def char_device(tmp_path):
    return null_device(tmp_path / "null-device")


@pytest.mark.parametrize(
    "write",
    [
        lambda p: write_json(p, {"a": 1}),
        lambda p: write_text(p, "text\n"),
        lambda p: write_tensors(p, {"x": torch.zeros(2)}),
    ],
    ids=["json", "text", "tensors"],
)
def test_a_character_device_is_written_to_not_replaced(char_device, write):
    write(char_device)
    assert is_null_device(char_device)
    assert sorted(p.name for p in char_device.parent.iterdir()) == ["null-device"]  # no temporary file left


def test_a_named_pipe_receives_the_content_and_stays_a_pipe(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = FifoReader(pipe)
    write_json(pipe, {"accuracy": 0.5})
    assert json.loads(reader.result()) == {"accuracy": 0.5}
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)


def test_cli_json_into_a_named_pipe_and_a_character_device(tmp_path, char_device):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = FifoReader(pipe)
    result = runner.invoke(app, ["info", "--limit", "4", "--json", str(pipe)])
    assert result.exit_code == 0, result.output
    assert json.loads(reader.result())["data"]["samples"] == 4
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    result = runner.invoke(app, ["info", "--limit", "4", "--json", str(char_device)])
    assert result.exit_code == 0, result.output
    assert is_null_device(char_device)


def test_an_open_descriptor_such_as_dev_stdout_is_written_through(tmp_path):
    """``--json /dev/stdout`` with stdout sent to a file: the report goes where the descriptor
    stands, between what was written before and after, and the file is not replaced."""
    fd = os.open(tmp_path / "out.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"before\n")
        write_json(f"/dev/fd/{fd}", {"a": 1})
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    assert (tmp_path / "out.txt").read_text() == 'before\n{\n  "a": 1\n}\nafter\n'


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_json(path, {"new": True})
    assert json.loads(path.read_text()) == {"new": True}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    os.chmod(path, 0o604)
    write_tensors(path, {"x": torch.ones(1)})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o604


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)], ids=["022", "027", "002"])
def test_a_new_file_gets_the_umask_not_0600(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "new.md", "# report\n")
        write_tensors(tmp_path / "new.pt", {"x": torch.ones(1)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.md").st_mode) == mode
    assert stat.S_IMODE(os.stat(tmp_path / "new.pt").st_mode) == mode


def test_a_symbolic_link_stays_a_link_and_its_file_is_replaced(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_json(link, {"v": 2})
    assert link.is_symlink() and json.loads(real.read_text()) == {"v": 2}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_folders_and_sockets_are_refused(tmp_path):
    with pytest.raises(UsageError, match="directory"):
        write_text(tmp_path, "x")
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(UsageError, match="socket"):
            write_text(sock_path, "x")
    assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
