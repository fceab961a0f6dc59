"""Calls in a worker process with a time limit: what bounds a hang inside the c2pa library."""

from __future__ import annotations

import os
import time

import pytest

from detector.provenance import read_provenance
from detector.provenance.findings import Kind, ProvenanceLimits, Strength
from detector.provenance.isolated import CallTimedOut, IsolatedCall, WorkerDied
from tests.provenance_files import c2pa_signed, jpeg


def test_a_call_answers_and_the_worker_is_reused() -> None:
    call = IsolatedCall(divmod, 10.0)
    try:
        assert call(17, 5) == (3, 2)
        assert call(9, 3) == (3, 0)
        with pytest.raises(ZeroDivisionError):  # the call's own error, the worker survives
            call(1, 0)
        assert call(7, 2) == (3, 1)
    finally:
        call.close()


def test_a_hanging_call_is_stopped_and_the_next_one_gets_a_fresh_worker() -> None:
    call = IsolatedCall(time.sleep, 0.5)
    try:
        started = time.monotonic()
        with pytest.raises(CallTimedOut):
            call(30)  # a hang: far past the limit
        assert time.monotonic() - started < 5.0
        assert call(0.01) is None  # a new worker answers
    finally:
        call.close()


def test_a_worker_that_dies_mid_call_is_reported_and_replaced() -> None:
    call = IsolatedCall(os._exit, 10.0)
    try:
        with pytest.raises(WorkerDied):
            call(3)  # what a segfault in native code looks like from here
    finally:
        call.close()
    again = IsolatedCall(divmod, 10.0)
    try:
        assert again(4, 2) == (2, 0)
    finally:
        again.close()


def test_c2pa_manifests_are_read_in_the_worker_and_bounded() -> None:
    signed = c2pa_signed(jpeg())
    declared = read_provenance(signed)
    assert declared[0].kind == Kind.C2PA and declared[0].strength is Strength.DECLARES_AI
    # The same file with a limit no reading can meet: recorded as unread, never a crash.
    rushed = read_provenance(signed, ProvenanceLimits(c2pa_timeout_s=0.001))
    assert any(f.kind == Kind.ERROR and "ran past" in f.says for f in rushed), rushed
    assert all(f.strength is not Strength.DECLARES_AI for f in rushed)
