"""The method registry: one dict of every row the suite can produce (DESIGN.md).

Adding a row = a module (or an entry in a family module) defining `train` and
`evaluate`, one `Row` here, and one `methods.<name>` entry in params.yaml. Rows name
their functions as "module:attribute" strings, imported on first use, so running one
row imports only its own family.
"""

from __future__ import annotations

from rlcv.errors import unknown_name
from rlcv.registry import Row

_PAPER_CODE = ("rlcv/models/pretrained.py", "rlcv/models/paper_backbones.py")
"""The paper profile's pretrained weights and backbones (issue 17); the optimizers
(rlcv/optim.py) are every row's, in rlcv.pipeline.SHARED_CODE."""

_EURL_CODE = ("methods/eurl/regress.py", "methods/eurl/deepmask.py", "methods/eurl/matched.py",
              "methods/eurl/holdout.py",
              "rlcv/rl/__init__.py",
              "rlcv/rl/boxenv.py", "rlcv/rl/actor_critic.py", "rlcv/rl/dqn.py",
              "rlcv/models/agent_nets.py", "rlcv/models/boxnets.py", "rlcv/models/crops.py",
              "rlcv/models/segnet.py", "rlcv/models/deepmask.py", *_PAPER_CODE)
"""What the EU-RL / active-localisation rows (issue 5) depend on beyond their module."""

_DEEPMASK_CODE = ("rlcv/models/crops.py", "rlcv/models/segnet.py", "rlcv/models/deepmask.py",
                  *_PAPER_CODE)
"""What the DeepMask rows of EU-RL Table 1 depend on beyond their module."""

_PGDET_CODE = ("methods/pgdetector/losses.py", "rlcv/models/detector.py", "rlcv/models/nms.py",
               "rlcv/rl/reinforce.py", "methods/pgdetector/plots.py", *_PAPER_CODE)
"""What the policy-gradient detector rows (issue 8) depend on beyond their module."""

_ACIS_CODE = ("methods/acis/train.py", "methods/acis/actor.py", "methods/acis/evaluate.py",
              "methods/acis/plots.py", "rlcv/models/acis.py", "rlcv/models/segnet.py",
              "rlcv/rl/potential.py")
"""What the ACIS rows (issue 7) depend on beyond their module."""

_CISS_CODE = ("methods/cissnet/data.py", "methods/cissnet/rl.py", "methods/cissnet/plots.py",
              "methods/cissnet/baseline.py", "methods/cissnet/paper.py",
              "rlcv/models/cissnet.py", "rlcv/models/pspnet.py", "rlcv/rl/advantage.py",
              *_PAPER_CODE)
"""What the CiSS-Net rows (issue 6) depend on beyond their module."""


def _ciss(name: str, tables: dict, data: str, kind: str, *requires: str) -> Row:
    """A CiSS-Net row (issues 6, 20) of `kind` baseline / ciss / controls; rows differ in
    data, tables and params.yaml."""
    mod = "methods.cissnet.controls" if kind == "controls" else "methods.cissnet.rows"
    config = {"baseline": "BaselineConfig", "ciss": "CissConfig",
              "controls": "ControlsConfig"}[kind]
    code = _CISS_CODE + (("methods/cissnet/rows.py",) if kind == "controls" else ())
    return Row(name=name, tables=tables, data=data, config=f"{mod}:{config}",
               train=f"{mod}:train_{kind}", evaluate=f"{mod}:evaluate_{kind}",
               requires=requires, code=code)


_CISS_CONTROLS = {"ciss-net-table1": "Baseline+Bias Net (empty context)",
                  "ciss-net-table4": "Baseline+Bias Net (empty context)"}
"""The controls rows report under both labels (metric@label) in Tables 1 and 4."""


_POSE_CODE = ("methods/eurl/pose_data.py", "methods/eurl/deepmask.py", "methods/eurl/holdout.py",
              "rlcv/models/hourglass.py",
              "rlcv/models/pose_nms.py", "rlcv/models/detector.py", "rlcv/models/crops.py",
              "rlcv/models/segnet.py", "rlcv/models/deepmask.py", *_PAPER_CODE)
"""What the EU-RL MPII pose rows (issue 9) depend on beyond their module."""
_POSE_AGENT_CODE = (*_POSE_CODE, "methods/eurl/pose_env.py", "methods/eurl/matched.py",
                    "rlcv/rl/__init__.py", "rlcv/rl/boxenv.py", "rlcv/rl/actor_critic.py",
                    "rlcv/models/agent_nets.py")


def _pgdet(name: str, tables: dict, train: str, *requires: str) -> Row:
    """A policy-gradient detector row (issue 8): rows differ in `train` and params.yaml."""
    mod = "methods.pgdetector.detector"
    return Row(name=name, tables=tables, data="coco/detection",
               config=f"{mod}:PGDetectorConfig", train=f"{mod}:{train}",
               evaluate=f"{mod}:evaluate", requires=requires, code=_PGDET_CODE)


def _acis(name: str, tables: dict, data: str, train: str, evaluate: str,
          *requires: str) -> Row:
    """An ACIS row (issue 7): rows differ in data, train/evaluate entry and params.yaml."""
    return Row(name=name, tables=tables, data=data, config="methods.acis.rows:AcisConfig",
               train=f"methods.acis.rows:{train}", evaluate=f"methods.acis.rows:{evaluate}",
               requires=requires, code=_ACIS_CODE)


def _pose_agent(name: str, tables: dict, train="methods.eurl.pose_agent:train_agent",
                rmpe: str = "eurl-pose-rmpe", twin: str | None = None) -> Row:
    """An EU-RL pose agent row (issue 9) on the RMPE row `rmpe`; the variants differ only
    in params.yaml."""
    return Row(name=name, tables=tables, data="mpii/multi",
               config="methods.eurl.pose_agent:PoseAgentConfig", train=train,
               evaluate="methods.eurl.pose_agent:evaluate_agent",
               requires=(rmpe,), code=_POSE_AGENT_CODE, twin=twin)


def _pose_chain(prefix: str, tables: dict, twin: str | None = None) -> dict[str, Row]:
    """The pose networks and RMPE of one chain (issue 19: Table 2 has its own, with the
    8-stack hourglass on the paper profile; Table 3 and Fig. 4 share a two-stack one):
    `<prefix>-boxes` (loose/tight hourglasses) and `<prefix>-rmpe` (detector + tight
    fine-tune); `tables` maps "boxes"/"rmpe" to the rows' table labels. `twin`: the
    prefix of a chain whose runs these rows copy where the settings are equal."""
    boxes, rmpe = f"{prefix}-boxes", f"{prefix}-rmpe"
    twin_of = (lambda part: f"{twin}-{part}") if twin else (lambda part: None)
    return {
        boxes: Row(name=boxes, tables=tables.get("boxes", {}), data="mpii/multi",
                   config="methods.eurl.pose:PoseNetConfig",
                   train="methods.eurl.pose:train_posenets",
                   evaluate="methods.eurl.pose:evaluate_posenets", code=_POSE_CODE,
                   twin=twin_of("boxes")),
        rmpe: Row(name=rmpe, tables=tables.get("rmpe", {}), data="mpii/multi",
                  config="methods.eurl.pose:RMPEConfig", train="methods.eurl.pose:train_rmpe",
                  evaluate="methods.eurl.pose:evaluate_rmpe", requires=(boxes,),
                  code=_POSE_CODE, twin=twin_of("rmpe")),
    }


METHODS: dict[str, Row] = {
    "gt-bbox-deepmask": Row(
        name="gt-bbox-deepmask",
        tables={"eu-rl-table1": "GT Bbox-Deepmask"},
        data="coco/single",
        config="methods.eurl.deepmask:DeepMaskConfig",
        train="methods.eurl.deepmask:train_gt_bbox",
        evaluate="methods.eurl.deepmask:evaluate",
        code=_DEEPMASK_CODE,
    ),
    "finetune-deepmask": Row(
        name="finetune-deepmask",
        tables={"eu-rl-table1": "Finetune-Deepmask"},
        data="coco/single",
        config="methods.eurl.deepmask:DeepMaskConfig",
        train="methods.eurl.deepmask:train_finetune",
        evaluate="methods.eurl.deepmask:evaluate",
        requires=("gt-bbox-deepmask",),
        code=_DEEPMASK_CODE,
    ),
    # EU-RL Table 1 rows beyond the supervised ones, and active localisation (issue 5)
    "box-regressor": Row(
        name="box-regressor",
        tables={"active-loc-table1": "Box regressor"},
        data="coco/single",
        config="methods.eurl.regress:RegressorConfig",
        train="methods.eurl.regress:train_regressor",
        evaluate="methods.eurl.regress:evaluate_regressor",
        code=_EURL_CODE,
    ),
    "regress-deepmask": Row(
        name="regress-deepmask",
        tables={"eu-rl-table1": "Regress-Deepmask"},
        data="coco/single",
        config="methods.eurl.regress:PipelineConfig",
        train="methods.eurl.regress:train_regress_deepmask",
        evaluate="methods.eurl.regress:evaluate_regress_deepmask",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "regress-stn-deepmask": Row(
        name="regress-stn-deepmask",
        tables={"eu-rl-table1": "Regress-STN-Deepmask"},
        data="coco/single",
        config="methods.eurl.regress:STNConfig",
        train="methods.eurl.regress:train_stn",
        evaluate="methods.eurl.regress:evaluate_stn",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "agent-deepmask": Row(
        name="agent-deepmask",
        tables={"eu-rl-table1": "Agent-Deepmask",
                "active-loc-table1": "Actor-critic agent (EU-RL)"},
        data="coco/single",
        config="methods.eurl.agent:AgentConfig",
        train="methods.eurl.agent:train_agent",
        evaluate="methods.eurl.agent:evaluate_agent_boxes",
        requires=("gt-bbox-deepmask",),
        code=_EURL_CODE,
    ),
    "regress-agent-deepmask": Row(
        name="regress-agent-deepmask",
        tables={"eu-rl-table1": "Regress-Agent-Deepmask"},
        data="coco/single",
        config="methods.eurl.agent:AgentConfig",
        train="methods.eurl.agent:train_agent",
        evaluate="methods.eurl.agent:evaluate_agent",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "regress-agent-deepmask-no-upgrade": Row(
        name="regress-agent-deepmask-no-upgrade",
        tables={"eu-rl-table1": "Regress-Agent-Deepmask w/o upgrade"},
        data="coco/single",
        config="methods.eurl.agent:AgentConfig",
        train="methods.eurl.agent:train_agent",
        evaluate="methods.eurl.agent:evaluate_agent",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "regress-deepmask-matched": Row(
        name="regress-deepmask-matched",
        tables={"eu-rl-table1":
                "Regress-Deepmask + equal-steps DeepMask fine-tune (compute-matched)"},
        data="coco/single",
        config="methods.eurl.matched:MatchedConfig",
        train="methods.eurl.regress:train_regress_deepmask_matched",
        evaluate="methods.eurl.regress:evaluate_regress_deepmask",
        requires=("gt-bbox-deepmask", "box-regressor", "regress-agent-deepmask"),
        code=_EURL_CODE,
    ),
    "regress-dqn-deepmask": Row(
        name="regress-dqn-deepmask",
        tables={"eu-rl-table1": "Regress-DQN-Deepmask"},
        data="coco/single",
        config="methods.activeloc.dqn:DQNConfig",
        train="methods.activeloc.dqn:train_dqn",
        evaluate="methods.activeloc.dqn:evaluate_dqn",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "regress-dqn-deepmask-eurl": Row(
        name="regress-dqn-deepmask-eurl",
        tables={"eu-rl-table1": "Regress-DQN-Deepmask (EU-RL environment)"},
        data="coco/single",
        config="methods.activeloc.dqn:DQNConfig",
        train="methods.activeloc.dqn:train_dqn",
        evaluate="methods.activeloc.dqn:evaluate_dqn",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "dqn-localizer": Row(
        name="dqn-localizer",
        tables={"active-loc-table1": "DQN agent (Caicedo & Lazebnik)"},
        data="coco/single",
        config="methods.activeloc.dqn:DQNConfig",
        train="methods.activeloc.dqn:train_dqn",
        evaluate="methods.activeloc.dqn:evaluate_dqn",
        code=_EURL_CODE,
    ),
    # Policy-gradient detector, Tables 1-2 (issue 8); fine-tuned rows start from the base
    # weights in the standard rows' checkpoints, "+ soft NMS" rows only evaluate differently
    "pgdet-standard": _pgdet("pgdet-standard", {"pg-detector-table1": "Faster R-CNN standard"},
        "train_standard"),
    "pgdet-standard-softnms": _pgdet("pgdet-standard-softnms",
        {"pg-detector-table1": "Faster R-CNN standard + soft NMS"}, "train_eval_variant",
        "pgdet-standard"),
    "pgdet-ohem": _pgdet("pgdet-ohem", {"pg-detector-table1": "Faster R-CNN OHEM"},
        "train_finetune", "pgdet-standard"),
    "pgdet-ours-g0": _pgdet("pgdet-ours-g0", {"pg-detector-table1": "Faster R-CNN ours (γ = 0)"},
        "train_finetune", "pgdet-standard"),
    "pgdet-ours-g1": _pgdet("pgdet-ours-g1",
        {"pg-detector-table1": "Faster R-CNN ours (γ = 1)",
         "pg-detector-table2": "Faster R-CNN (ours)"},
        "train_finetune", "pgdet-standard"),
    "pgdet-ours-g1-softnms": _pgdet("pgdet-ours-g1-softnms",
        {"pg-detector-table1": "Faster R-CNN ours (γ = 1) + soft NMS"}, "train_eval_variant",
        "pgdet-ours-g1"),
    "pgdet-fpn-standard": _pgdet("pgdet-fpn-standard",
        {"pg-detector-table1": "Faster R-CNN with FPN standard"}, "train_standard"),
    "pgdet-fpn-ours-g1": _pgdet("pgdet-fpn-ours-g1",
        {"pg-detector-table1": "Faster R-CNN with FPN ours (γ = 1)",
         "pg-detector-table2": "Faster R-CNN with FPN (ours)"},
        "train_finetune", "pgdet-fpn-standard"),
    # ACIS, Tables 1-4 and Fig. 3 (issue 7); the pretrain rows hold the shared
    # pre-processing net, cVAE decoder and actor init the other rows start from
    "acis-pretrain-cvppp": _acis("acis-pretrain-cvppp", {}, "cvppp/ablation", "train_pretrain",
        "evaluate_pretrain"),
    "acis-bl": _acis("acis-bl", {"acis-table1": "BL", "acis-table2": "BL"}, "cvppp/ablation",
        "train_actor", "evaluate_table12", "acis-pretrain-cvppp"),
    "acis-bl-trunc": _acis("acis-bl-trunc",
        {"acis-table1": "BL-Trunc", "acis-table2": "BL-Trunc", "acis-fig3": "BL-Trunc"},
        "cvppp/ablation", "train_actor", "evaluate_table12_fig3", "acis-pretrain-cvppp"),
    "acis-ac-dice": _acis("acis-ac-dice",
        {"acis-table1": "AC-Dice", "acis-table2": "AC-Dice", "acis-fig3": "AC-Dice"},
        "cvppp/ablation", "train_actor", "evaluate_table12_fig3", "acis-pretrain-cvppp"),
    "acis-ac-dice-nokl": _acis("acis-ac-dice-nokl", {"acis-table1": "AC-Dice-NoKL"},
        "cvppp/ablation", "train_actor", "evaluate_table1", "acis-pretrain-cvppp"),
    "acis-ac-dice-nosp": _acis("acis-ac-dice-nosp", {"acis-table1": "AC-Dice-NoSP"},
        "cvppp/ablation", "train_actor", "evaluate_table1", "acis-pretrain-cvppp"),
    "acis-ac-dice-test": _acis("acis-ac-dice-test", {"acis-table3": "Ours (AC-Dice)"},
        "cvppp/traintest", "train_actor", "evaluate_test", "acis-pretrain-cvppp"),
    "acis-pretrain-kitti": _acis("acis-pretrain-kitti", {}, "kitti/cars", "train_pretrain",
        "evaluate_pretrain"),
    "acis-kitti-bl-trunc": _acis("acis-kitti-bl-trunc", {"acis-table4": "Ours (BL-Trunc)"},
        "kitti/cars", "train_actor", "evaluate_kitti", "acis-pretrain-kitti"),
    "acis-kitti-ac-iou": _acis("acis-kitti-ac-iou", {"acis-table4": "Ours (AC-IoU)"}, "kitti/cars",
        "train_actor", "evaluate_kitti", "acis-pretrain-kitti"),
    # CiSS-Net (issue 6): per dataset the frozen baseline, CiSS-Net, and its ablations
    "ciss-baseline-ade20k": Row(
        name="ciss-baseline-ade20k",
        tables={"ciss-net-table4": "Baseline", "ciss-net-table6": "Baseline (ours)"},
        data="ade20k/sceneparsing", config="methods.cissnet.rows:BaselineConfig",
        train="methods.cissnet.rows:train_baseline",
        evaluate="methods.cissnet.rows:evaluate_baseline", code=_CISS_CODE),
    "ciss-net-ade20k": Row(
        name="ciss-net-ade20k",
        tables={"ciss-net-table1": "Step 2", "ciss-net-table3": "λ2=0.05",
                "ciss-net-table4": "CiSS-Net", "ciss-net-table5": "Ours",
                "ciss-net-table6": "CiSS-Net (Ours)"},
        data="ade20k/sceneparsing", config="methods.cissnet.rows:CissConfig",
        train="methods.cissnet.rows:train_ciss",
        evaluate="methods.cissnet.rows:evaluate_ciss", requires=("ciss-baseline-ade20k",),
        code=_CISS_CODE),
    "ciss-ablations-ade20k": Row(
        name="ciss-ablations-ade20k",
        tables={"ciss-net-table2": "γ=0.9", "ciss-net-table3": "λ2=0.02",
                "ciss-net-table4": "Baseline+p-map", "ciss-net-table5": "w/o RL"},
        data="ade20k/sceneparsing", config="methods.cissnet.rows:AblationConfig",
        train="methods.cissnet.rows:train_ablations",
        evaluate="methods.cissnet.rows:evaluate_ablations",
        requires=("ciss-baseline-ade20k",), code=_CISS_CODE),
    "ciss-baseline-cityscapes": Row(
        name="ciss-baseline-cityscapes",
        tables={"ciss-net-table4": "Baseline", "ciss-net-table8": "Baseline (ours)"},
        data="cityscapes/fine", config="methods.cissnet.rows:BaselineConfig",
        train="methods.cissnet.rows:train_baseline",
        evaluate="methods.cissnet.rows:evaluate_baseline", code=_CISS_CODE),
    "ciss-net-cityscapes": Row(
        name="ciss-net-cityscapes",
        tables={"ciss-net-table1": "Step 2", "ciss-net-table3": "λ2=0.05",
                "ciss-net-table4": "CiSS-Net", "ciss-net-table5": "Ours",
                "ciss-net-table8": "CiSS-Net (Ours)"},
        data="cityscapes/fine", config="methods.cissnet.rows:CissConfig",
        train="methods.cissnet.rows:train_ciss",
        evaluate="methods.cissnet.rows:evaluate_ciss", requires=("ciss-baseline-cityscapes",),
        code=_CISS_CODE),
    "ciss-ablations-cityscapes": Row(
        name="ciss-ablations-cityscapes",
        tables={"ciss-net-table2": "γ=0.9", "ciss-net-table3": "λ2=0.02",
                "ciss-net-table4": "Baseline+p-map", "ciss-net-table5": "w/o RL"},
        data="cityscapes/fine", config="methods.cissnet.rows:AblationConfig",
        train="methods.cissnet.rows:train_ablations",
        evaluate="methods.cissnet.rows:evaluate_ablations",
        requires=("ciss-baseline-cityscapes",), code=_CISS_CODE),
    # issue 20: capacity / same-steps controls of Tables 1 and 4, and Table 7's rows
    "ciss-controls-ade20k": _ciss("ciss-controls-ade20k", _CISS_CONTROLS,
                                  "ade20k/sceneparsing", "controls", "ciss-baseline-ade20k",
                                  "ciss-net-ade20k"),
    "ciss-controls-cityscapes": _ciss("ciss-controls-cityscapes", _CISS_CONTROLS,
                                      "cityscapes/fine", "controls",
                                      "ciss-baseline-cityscapes", "ciss-net-cityscapes"),
    "ciss-baseline-pascal-context": _ciss("ciss-baseline-pascal-context",
                                          {"ciss-net-table7": "Baseline (ours)"},
                                          "pascal_context/context59", "baseline"),
    "ciss-net-pascal-context": _ciss("ciss-net-pascal-context",
                                     {"ciss-net-table7": "CiSS-Net (Ours)"},
                                     "pascal_context/context59", "ciss",
                                     "ciss-baseline-pascal-context"),
    # EU-RL on MPII pose (issue 9): pose nets, the RMPE pipeline, the agent and ablations
    # Table 3 and Fig. 4 (two-stack hourglass on every profile)
    **_pose_chain("eurl-pose", {"boxes": {"eu-rl-fig4": "Loose bbox model"}}),
    # Table 2 (its own runs: 8-stack hourglass on the paper profile; on the small profiles
    # the settings are Table 3's, and the runs are copied from it: rlcv.twins)
    **_pose_chain("eurl-pose-t2", {"rmpe": {"eu-rl-table2": "Fang et al. [11]"}},
                  twin="eurl-pose"),
    "eurl-pose-t2": _pose_agent("eurl-pose-t2", {"eu-rl-table2": "ours"},
                                rmpe="eurl-pose-t2-rmpe", twin="eurl-pose"),
    "eurl-pose-rmpe-matched": Row(
        name="eurl-pose-rmpe-matched",
        tables={"eu-rl-table2": "RMPE + equal extra steps (compute-matched)"},
        data="mpii/multi", config="methods.eurl.matched:MatchedConfig",
        train="methods.eurl.pose_agent:train_rmpe_matched",
        evaluate="methods.eurl.pose:evaluate_rmpe", requires=("eurl-pose-t2-rmpe", "eurl-pose-t2"),
        code=_POSE_AGENT_CODE),
    "eurl-pose": _pose_agent("eurl-pose", {"eu-rl-table3": "Ours, full",
                                           "eu-rl-fig4": "Upgrade at last step"}),
    "eurl-pose-ablations": _pose_agent("eurl-pose-ablations",
                                       {"eu-rl-table3": "(a) w/o feedback"},
                                       "methods.eurl.pose_agent:train_ablations"),
    "eurl-pose-every-step": _pose_agent("eurl-pose-every-step",
                                        {"eu-rl-fig4": "Upgrade at every step"}),
}


def get(name: str) -> Row:
    """The row called `name`; an unknown name lists the known ones."""
    if name not in METHODS:
        raise unknown_name("row", name, METHODS)
    return METHODS[name]
