"""What the command line checks before it does anything: files, folders and numbers given by a
user. Each refusal is a UsageError whose text names the option and the problem in one line;
tools/cli.main prints it as `fastq COMMAND: ...` and exits 2 (argparse's convention)."""
from __future__ import annotations

import argparse
import os
import stat

import fastq

# The largest matrix (elements) a command builds from sizes given on the command line: 2^24
# int64 values are 128 MiB, far above any layer one would read by hand and far below a
# MemoryError on a small machine.
MAX_ELEMENTS = 1 << 24


class UsageError(Exception):
    """A user error on the command line: printed as one line, exit status 2."""


def one_line(text):
    """text with line breaks and other control characters shown as escapes (a user-given path or
    a message quoting one must not add lines or drive the terminal)."""
    text = str(text)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def int_at_least(low, high=None):
    """An argparse type: an int in [low, high]; argparse reports a bad one in one line, exit 2."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected an integer, got %r" % text) from None
        if v < low or (high is not None and v > high):
            want = ">= %d" % low if high is None else "in [%d, %d]" % (low, high)
            raise argparse.ArgumentTypeError("expected an integer %s, got %d" % (want, v))
        return v
    parse.__name__ = "int"
    return parse


def check_elements(option, *dims):
    """Refuses sizes whose product exceeds MAX_ELEMENTS before anything is allocated."""
    total = 1
    for d in dims:
        total *= int(d)
    if total > MAX_ELEMENTS:
        raise UsageError("%s: %s = %d elements; at most %d (2**24) are built from the command line"
                         % (option, " x ".join(str(int(d)) for d in dims), total, MAX_ELEMENTS))
    return total


def readable_file(path, option):
    """path must name an existing regular file (a FIFO or a device would block or never end).
    option: how the command line calls it (e.g. "--model"); "" for none."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UsageError(("%s %s: %s" % (option, one_line(repr(path)), e.strerror or e)).lstrip()) from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(("%s %s: is a directory, expected a file" % (option, one_line(repr(path)))).lstrip())
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(("%s %s: not a regular file" % (option, one_line(repr(path)))).lstrip())
    return path


def load_model(path, option):
    """fastq.load with every refusal named by the option that gave the path."""
    readable_file(path, option)
    try:
        return fastq.load(path)
    except OSError as e:
        raise UsageError(("%s %s: %s" % (option, one_line(repr(path)), e.strerror or e)).lstrip()) from None
    except (ValueError, TypeError) as e:         # fastq.load's message names the file already
        raise UsageError(("%s: %s" % (option, one_line(e))) if option else one_line(e)) from None


def output_folder(path, option):
    """A folder to write into: created when missing; refused when it is a file or cannot be made."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError("%s %s: exists and is not a directory" % (option, one_line(repr(path))))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UsageError("%s %s: cannot create the folder: %s" % (option, one_line(repr(path)), e.strerror or e)) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError("%s %s: the folder is not writable" % (option, one_line(repr(path))))
    return path
