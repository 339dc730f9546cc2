"""Reading only regular files (advgrad/io/paths.py and every reader that uses it): a character
device, a named pipe, a socket, a folder or a symbolic-link loop where a file is expected is one
line and exit 2, found by ``stat`` before anything is opened; a config is read up to a size limit;
an image folder lists regular files only and names a symbolic-link loop.

No device is read without end here: /dev/null stands for a character device (reading it ends at
once, also in a regression) and every named pipe is read behind a guard (special_files.unblocking)
that ends a blocked call, so that a regression fails instead of hanging."""

from __future__ import annotations

import os
import socket

import factory_models as fm
import pytest
import torch
from loading_fixtures import assert_bad_input, run_cli, save_tensors, write_image_folder
from special_files import FifoWriter, unblocking

from advgrad.core.errors import DataError, ModelError, UsageError
from advgrad.io.data.load_data import load_data
from advgrad.io.paths import open_regular, read_capped, require_file, walk_files
from advgrad.io.run_config import CONFIG_LIMIT, read_config

DEVICE = "/dev/null"  # a character device that is harmless to read (and to read again, in a regression)


@pytest.fixture
def files(tmp_path):
    """A model, weights and data that load, and a named pipe, beside them."""
    model = fm.make().eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    return {
        "dir": tmp_path,
        "weights": tmp_path / "w.pt",
        "data": save_tensors(tmp_path / "d.pt", x, model(x).argmax(1)),
        "fifo": fifo,
    }


def refused(*args, fifo=None, command="info"):
    """The one line of an ``advgrad info`` (or ``command``) refused with exit 2, behind the named-pipe guard."""
    result = unblocking(lambda: run_cli(command, "--device", "cpu", *args), *([fifo] if fifo else []))
    return assert_bad_input(result)


# ---------------------------------------------------------------------------------------------
# the checker


def test_require_file_says_what_the_path_is_without_opening_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short socket path (at most 108 bytes)
    os.mkfifo("pipe")
    (tmp_path / "folder").mkdir()
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "to-pipe").symlink_to("pipe")
    (tmp_path / "to-device").symlink_to(DEVICE)
    (tmp_path / "file").write_bytes(b"x")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        expected = {
            DEVICE: "is a character device; expected a file",
            "to-device": "is a character device",
            "pipe": "is a named pipe (FIFO)",
            "to-pipe": "is a named pipe (FIFO)",
            "sock": "is a socket",
            "folder": "is a directory",
            "loop": "is a symbolic link loop",
            "missing": "missing: no such file",
        }
        for name, words in expected.items():
            with pytest.raises(DataError, match=r"^`data` .*" + words.replace("(", r"\(").replace(")", r"\)")) as info:
                unblocking(lambda name=name: require_file(name, "a file", DataError, param="data"), tmp_path / "pipe")
            assert info.value.params == ("data",)
    assert require_file("file", "a file", DataError).resolve() == tmp_path / "file"


def test_open_regular_refuses_a_pipe_swapped_in_after_the_check(tmp_path, monkeypatch):
    """Between the check and the open a file can become a named pipe: the open does not block and
    the descriptor is checked again."""
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    monkeypatch.setattr("advgrad.io.paths.require_file", lambda path, *args, **kwargs: path)  # the check passed
    with pytest.raises(ModelError, match=r"`model` .*model.pt is a named pipe \(FIFO\)"):
        unblocking(lambda: open_regular(fifo, "a model file", ModelError, param="model"), fifo)


def test_read_capped_reads_at_most_the_limit(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"a" * 10)
    assert read_capped(path, 10, "a config", UsageError) == b"a" * 10
    with pytest.raises(UsageError, match=r"c.toml is larger than 9 bytes, the limit for a config"):
        read_capped(path, 9, "a config", UsageError)


# ---------------------------------------------------------------------------------------------
# every option that names a file (issue 21, item 5; a named pipe: item 6)


def test_config_must_be_a_regular_file_of_at_most_a_mebibyte(files, tmp_path):
    (tmp_path / "device.toml").symlink_to(DEVICE)
    for config in (DEVICE, tmp_path / "device.toml"):
        message = refused("--config", config, command="eval")
        assert f"error: --config {config} is a character device; expected a config file" in message, message
    message = refused("--config", files["fifo"], fifo=files["fifo"], command="train")
    assert "--config" in message and "named pipe (FIFO)" in message, message
    big = tmp_path / "big.toml"
    with open(big, "wb") as fh:
        fh.truncate(CONFIG_LIMIT + 1)  # sparse: nothing is written
    message = refused("--config", big, command="certify")
    assert f"--config {big} is larger than 1 MiB" in message, message
    small = tmp_path / "small.toml"
    small.write_text("limit = 2\n" + "#" * (CONFIG_LIMIT - 20) + "\n")
    assert read_config(small) == ({"limit": 2}, str(small))


@pytest.mark.parametrize("kind", ["device", "fifo", "link-to-device", "link-to-fifo"])
def test_model_weights_and_data_must_be_regular_files(files, kind):
    d = files["dir"]
    target = DEVICE if "device" in kind else files["fifo"]
    path = d / "link.pt"
    path.symlink_to(target) if kind.startswith("link") else None
    path = path if kind.startswith("link") else target
    what = "a character device" if "device" in kind else "a named pipe (FIFO)"
    for option, args in (
        ("--model", ["--model", path]),
        ("--weights", ["--model", "factory_models:make", "--weights", path]),
        ("--data", ["--data", path, "--model", "factory_models:make", "--weights", files["weights"]]),
    ):
        if option == "--data" and not kind.startswith("link"):
            continue  # the data's form comes from its suffix: /dev/null and "pipe" have none
        message = refused(*args, fifo=files["fifo"])
        assert f"error: {option} {path} is {what}; expected" in message, message


def test_table_bounds_and_weights_must_be_regular_files(files, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("a,b,label\n0,1,0\n1,0,1\n")
    for option in ("--bounds", "--eps-scale"):
        message = refused("--data", table, option, DEVICE)
        assert f"{option} {DEVICE} is a character device" in message, message
    pipe = tmp_path / "bounds.csv"
    os.mkfifo(pipe)
    assert "--bounds" in refused("--data", table, "--bounds", pipe, fifo=pipe)
    csv_pipe = tmp_path / "pipe.csv"
    os.mkfifo(csv_pipe)
    assert "--data" in refused("--data", csv_pipe, fifo=csv_pipe)


def test_compare_refuses_a_report_that_is_not_a_regular_file(files):
    result = unblocking(lambda: run_cli("compare", files["fifo"], DEVICE), files["fifo"])
    assert "is a named pipe (FIFO)" in assert_bad_input(result)


def test_a_model_in_a_named_pipe_is_refused_also_with_a_writer(files):
    """A writer used to make it exit 3 (the zip reader cannot seek a pipe); now it is never opened."""
    writer = FifoWriter(files["fifo"], b"PK\x03\x04" + bytes(100))
    try:
        message = refused("--model", files["fifo"], fifo=files["fifo"])
    finally:
        writer.close()
    assert "--model" in message and "named pipe (FIFO)" in message, message


# ---------------------------------------------------------------------------------------------
# image folders (item 6)


def test_an_image_folder_skips_what_is_not_a_regular_file_and_says_so_once(tmp_path):
    root = write_image_folder(tmp_path / "imgs", {"a": 2, "b": 1})
    os.mkfifo(root / "a" / "x.png")
    (root / "b" / "zero.png").symlink_to(DEVICE)
    (root / "b" / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    os.mkfifo(root / "b" / "notes")  # not an image's name: ignored, as before, and not counted
    source = unblocking(lambda: load_data(str(root)), root / "a" / "x.png")
    assert [os.path.basename(p) for p, _ in source._items.dataset.samples] == ["0.png", "1.png", "0.png"]
    x, y = unblocking(lambda: source.fetch(torch.arange(3)), root / "a" / "x.png")
    assert x.shape == (3, 3, 10, 12) and y.tolist() == [0, 0, 1]
    assert len(source.warnings) == 1 and "skipped 3 entries" in source.warnings[0]
    result = unblocking(
        lambda: run_cli(
            "info", "--device", "cpu", "--data", root, "--model", "factory_models:make", "--model-arg", "channels=3"
        ),
        root / "a" / "x.png",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("skipped 3 entries with an image's name") == 1, result.stderr


def test_a_class_of_pipes_only_is_empty_and_says_why(tmp_path):
    root = write_image_folder(tmp_path / "imgs", {"a": 1})
    (tmp_path / "imgs" / "b").mkdir()
    os.mkfifo(root / "b" / "x.png")
    with pytest.raises(DataError, match=r"none in b; .*; 1 skipped, not regular files"):
        unblocking(lambda: load_data(str(root)), root / "b" / "x.png")


def test_an_image_read_after_the_listing_is_still_a_regular_file(tmp_path):
    """An image replaced by a named pipe after the folder was listed fails that batch in one line."""
    root = write_image_folder(tmp_path / "imgs", {"a": 2})
    source = load_data(str(root))
    (root / "a" / "1.png").unlink()
    os.mkfifo(root / "a" / "1.png")
    with pytest.raises(DataError, match=r"cannot read image .*1.png .*named pipe \(FIFO\)"):
        unblocking(lambda: source.fetch(torch.arange(2)), root / "a" / "1.png")


def test_a_symbolic_link_loop_in_an_image_folder_is_named(tmp_path):
    root = write_image_folder(tmp_path / "imgs", {"a": 1, "b": 1})
    (root / "a" / "up").symlink_to("..")  # a/up/a/up/... : a folder that contains itself
    with pytest.raises(
        DataError, match=r"imgs/a/up leads back to .*imgs, a folder that contains it: a symbolic link loop"
    ):
        load_data(str(root))
    (root / "a" / "up").unlink()
    (root / "a" / "same").symlink_to(root / "b")  # b twice: as a class, and inside a
    with pytest.raises(
        DataError, match=r"imgs/b and .*imgs/a/same are one folder, reached twice through a symbolic link"
    ):
        load_data(str(root))
    message = assert_bad_input(
        run_cli("info", "--data", root, "--model", "factory_models:make", "--model-arg", "channels=3")
    )
    assert message.startswith("error: --data ") and "reached twice" in message


def test_walk_files_follows_links_to_folders_in_torchvision_order(tmp_path):
    (tmp_path / "top" / "z").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for name in ("top/z/b.png", "top/z/a.png", "top/c.png", "elsewhere/d.png", "top/skip.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "top" / "m").symlink_to(tmp_path / "elsewhere")
    os.mkfifo(tmp_path / "top" / "z" / "e.png")
    found = walk_files(tmp_path / "top", lambda name: name.endswith(".png"), DataError)
    top = str(tmp_path / "top")
    assert found == [(top, ["c.png"], 0), (top + "/m", ["d.png"], 0), (top + "/z", ["a.png", "b.png"], 1)]
    walked = sorted(os.walk(top, followlinks=True))  # torchvision's order (it lists the pipe too)
    assert [(f, names) for f, names, _ in found] == [
        (r, sorted(n for n in fs if n.endswith(".png") and n != "e.png")) for r, _, fs in walked
    ]
