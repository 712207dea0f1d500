import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy_code.errors import ErrorCode, SupervisionError
from deploy_code.events import ReplicaState
from deploy_code.supervisor import TRANSITIONS, check_transition


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(ReplicaState)


def test_illegal_transition_names_both_states() -> None:
    with pytest.raises(SupervisionError) as err:
        check_transition(ReplicaState.PENDING, ReplicaState.READY, who="api.0")
    assert err.value.code == ErrorCode.S005
    assert "pending -> ready" in err.value.message and "api.0" in err.value.message


@given(st.lists(st.sampled_from(list(ReplicaState)), max_size=50))
def test_walks_follow_the_table(path: list[ReplicaState]) -> None:
    state = ReplicaState.PENDING
    for nxt in path:
        if nxt in TRANSITIONS[state]:
            check_transition(state, nxt, who="x.0")
            state = nxt
        else:
            with pytest.raises(SupervisionError):
                check_transition(state, nxt, who="x.0")


def test_terminal_states_can_only_restart() -> None:
    for s in (ReplicaState.STOPPED, ReplicaState.COMPLETED, ReplicaState.FAILED):
        assert s.is_terminal
        assert TRANSITIONS[s] <= {ReplicaState.STARTING, ReplicaState.PENDING}
