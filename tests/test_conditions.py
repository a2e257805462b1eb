"""What a user asks a trained model to sample with, checked against the run in one place (gan and diffusion)."""

import pytest

from armlab_scripts import cli
from generative.conditions import requested_conditions
from robot_env.io.errors import ParamError


def test_requested_conditions_fit_the_run():
    assert requested_conditions("r", ("class", "target"), class_id="cube", target="0.4,0.6") == {
        "class_id": "cube", "target": [0.4, 0.6]}
    assert requested_conditions("r", ("class", "target"), cond=("class", "target"), target=(0.0, 1.0)) == {
        "target": [0.0, 1.0]}
    assert requested_conditions("r", ("joints",), joints=["0.1", "-0.3", "1.0"]) == {"joints": "0.1,-0.3,1.0"}
    assert requested_conditions("r", ()) == {}


@pytest.mark.parametrize("kw, param, python, flag", [
    (dict(class_id="cube"), "class_id", "leave class_id out", "leave --class out"),
    (dict(joints=[0.1]), "joints", "leave joints out", "leave --joints out"),
    (dict(run_cond=("target",), target="0.4"), "target", "target takes two numbers", "--target takes two numbers"),
    (dict(run_cond=("target",), target="1.5,0.2"), "target", "target takes two numbers", "--target takes"),
])
def test_a_condition_the_run_cannot_take_names_the_parameter_or_the_flag(kw, param, python, flag):
    run_cond = kw.pop("run_cond", ())
    with pytest.raises(ParamError) as err:
        requested_conditions("runs/x", run_cond, **kw)
    assert err.value.param == param and python in str(err.value)
    parser = cli.build_parser()
    for command in (["gan", "sample", "--run", "runs/x"], ["diffusion", "sample", "--run", "runs/x"]):
        if param == "joints" and command[0] == "gan":
            continue  # the GAN has no joint conditions
        assert flag in err.value.render(cli.flag_for(parser, command, param))


def test_another_set_of_conditions_than_the_run_s_is_refused():
    with pytest.raises(ValueError, match="conditioned on class,target, not on class"):
        requested_conditions("r", ("class", "target"), cond=("class",))
    with pytest.raises(ValueError, match="nothing \\(unconditional\\), not on class"):
        requested_conditions("r", (), cond=("class",))
