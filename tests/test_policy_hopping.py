"""Issue 20.5: the listener memory behind the hopping check, bounded per account, and the
accounts it follows (creator and holders). Pure: the state on its own, no processes; the real
processes are in tests/test_evasions.py (-k hopping)."""

from types import SimpleNamespace

import orjson
import pytest

from ptfast.decide import state as state_mod
from ptfast.decide.findings import REMEMBER_LISTENER, Remember
from ptfast.decide.state import ReportedState

FLOODER, OTHER, THIRD = 2001, 2002, 2003


def listeners(uid, inodes):
    return [SimpleNamespace(netns=1, inode=inode, uid=uid) for inode in inodes]


@pytest.fixture
def small_bounds(monkeypatch):
    monkeypatch.setattr(state_mod, "MAX_LISTENERS", 6)
    monkeypatch.setattr(state_mod, "MAX_LISTENERS_PER_ACCOUNT", 3)


def test_an_account_at_its_share_loses_only_its_own_newest(tmp_path, small_bounds):
    state = ReportedState(str(tmp_path))
    flood = listeners(FLOODER, range(100, 110))
    assert state.observe_listeners(flood, now=10.0) == {FLOODER: 7}
    assert {key[1] for key in state.listeners} == {100, 101, 102}     # its oldest kept
    # the other account's listener is remembered although the flooder has 10 open
    assert state.observe_listeners(flood + listeners(OTHER, [200]), now=20.0) == {FLOODER: 7}
    assert state.listener_seen(1, 200) == (OTHER, 20.0, False)
    assert state.listener_seen(1, 100) == (FLOODER, 10.0, False)     # age not reset
    assert state.listeners_left_out == {FLOODER: 14}


def test_a_reported_entry_makes_room_before_an_unreported_one(tmp_path, small_bounds):
    state = ReportedState(str(tmp_path))
    first = listeners(FLOODER, [100, 101, 102])
    state.observe_listeners(first, now=10.0)
    state.remember(Remember(REMEMBER_LISTENER, (1, 101)))
    assert state.observe_listeners(first + listeners(FLOODER, [103]), now=20.0) == {FLOODER: 1}
    assert {key[1] for key in state.listeners} == {100, 102, 103}


def test_when_all_is_full_the_largest_account_gives_up_its_newest(tmp_path, monkeypatch):
    monkeypatch.setattr(state_mod, "MAX_LISTENERS", 6)
    monkeypatch.setattr(state_mod, "MAX_LISTENERS_PER_ACCOUNT", 4)
    state = ReportedState(str(tmp_path))
    held = listeners(FLOODER, [100, 101, 102, 103]) + listeners(OTHER, [200, 201])
    state.observe_listeners(held, now=10.0)          # 6: the whole memory
    assert state.observe_listeners(held + listeners(THIRD, [300]), now=20.0) == {FLOODER: 1}
    assert (1, 300) in state.listeners and (1, 103) not in state.listeners
    # until all hold as many: then a newcomer is left out itself
    assert state.observe_listeners(held + listeners(THIRD, [300, 301, 302]),
                                   now=30.0) == {FLOODER: 2, THIRD: 1}
    assert sorted(key[1] for key in state.listeners) == [100, 101, 200, 201, 300, 301]
    assert state.listener_seen(1, 100) == (FLOODER, 10.0, False)


def test_holders_of_any_account_are_followed_and_kept_across_restarts(tmp_path):
    state = ReportedState(str(tmp_path))
    state.observe_listeners(listeners(FLOODER, [100]), holders={(1, 100): {OTHER}}, now=10.0)
    state.held_by({(1, 100): {THIRD}})
    assert state.listener_uids(5.0, 20.0) == {FLOODER, OTHER, THIRD}
    assert state.listener_uids(5.0, 12.0) == set()          # not older than the limit yet
    state.save()
    again = ReportedState(str(tmp_path))
    assert again.load() is None
    assert again.listener_uids(5.0, 20.0) == {FLOODER, OTHER, THIRD}
    state.remember(Remember(REMEMBER_LISTENER, (1, 100)))
    assert state.listener_uids(5.0, 20.0) == set()           # reported: no more walks


def test_a_state_file_without_holders_still_loads(tmp_path):
    (tmp_path / "reported.json").write_bytes(orjson.dumps(
        {"version": 1, "reported": [], "listeners": [[1, 100, FLOODER, 10.0, False]]}))
    state = ReportedState(str(tmp_path))
    assert state.load() is None
    assert state.listener_seen(1, 100) == (FLOODER, 10.0, False)
    assert state.listener_uids(5.0, 20.0) == {FLOODER}


def test_holders_per_listener_are_bounded(tmp_path):
    state = ReportedState(str(tmp_path))
    state.observe_listeners(listeners(FLOODER, [100]), now=10.0)
    state.held_by({(1, 100): range(5000, 5100)})
    assert len(state.listeners[(1, 100)][3]) == state_mod.MAX_HOLDERS
