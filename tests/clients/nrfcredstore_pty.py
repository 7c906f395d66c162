"""Runs Nordic's nrfcredstore unchanged against a pseudo-terminal.

nrfcredstore accepts only ports that pyserial's port listing shows (real USB serial devices), and a
pseudo-terminal is not listed; this wrapper adds the given path to that listing, then runs the
tool's own entry point with the remaining arguments. Usage:
    python nrfcredstore_pty.py /dev/pts/N [nrfcredstore arguments...]
"""
import os
import sys

from serial.tools.list_ports_common import ListPortInfo

import nrfcredstore.comms as comms
from nrfcredstore.cli import run

pty = os.path.realpath(sys.argv[1])
listed = comms.get_comports_fixed_ordering


def with_pty():
    info = ListPortInfo(pty, skip_link_detection=True)
    info.hwid = "PTY SER=simulated"
    return listed() + [info]


comms.get_comports_fixed_ordering = with_pty
run(["nrfcredstore"] + sys.argv[1:])
