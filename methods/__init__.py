"""The method registry: one dict of every row the suite can produce (DESIGN.md).

Adding a row = a module (or an entry in a family module) defining `train` and
`evaluate`, one `Row` here, and one `methods.<name>` entry in params.yaml. Rows name
their functions as "module:attribute" strings, imported on first use, so running one
row imports only its own family.
"""

from __future__ import annotations

from rlcv.errors import unknown_name
from rlcv.registry import Row

_EURL_CODE = ("methods/eurl.py", "methods/deepmask.py", "rlcv/rl/__init__.py", "rlcv/rl/boxenv.py",
              "rlcv/rl/actor_critic.py", "rlcv/rl/dqn.py", "rlcv/models/agent_nets.py",
              "rlcv/models/boxnets.py", "rlcv/models/crops.py", "rlcv/models/segnet.py")
"""What the EU-RL / active-localisation rows (issue 5) depend on beyond their module."""

_PGDET_CODE = ("rlcv/models/detector.py", "rlcv/models/nms.py", "rlcv/rl/reinforce.py")
"""What the policy-gradient detector rows (issue 8) depend on beyond their module."""

_ACIS_CODE = ("methods/acis_train.py", "methods/acis_actor.py", "methods/acis_eval.py",
              "methods/acis_plots.py", "rlcv/models/acis.py", "rlcv/models/segnet.py",
              "rlcv/rl/potential.py")
"""What the ACIS rows (issue 7) depend on beyond their module."""

_CISS_CODE = ("methods/cissnet_data.py", "methods/cissnet_rl.py", "methods/cissnet_plots.py",
              "rlcv/models/cissnet.py", "rlcv/rl/advantage.py")
"""What the CiSS-Net rows (issue 6) depend on beyond their module."""


_POSE_CODE = ("methods/eurl_pose_data.py", "methods/deepmask.py", "rlcv/models/hourglass.py",
              "rlcv/models/pose_nms.py", "rlcv/models/detector.py", "rlcv/models/crops.py",
              "rlcv/models/segnet.py")
"""What the EU-RL MPII pose rows (issue 9) depend on beyond their module."""
_POSE_AGENT_CODE = (*_POSE_CODE, "rlcv/rl/__init__.py", "rlcv/rl/boxenv.py",
                    "rlcv/rl/actor_critic.py", "rlcv/models/agent_nets.py")


def _pose_agent(name: str, tables: dict, train="methods.eurl_pose_agent:train_agent") -> Row:
    """An EU-RL pose agent row (issue 9); the variants differ only in params.yaml."""
    return Row(name=name, tables=tables, data="mpii/multi",
               config="methods.eurl_pose_agent:PoseAgentConfig", train=train,
               evaluate="methods.eurl_pose_agent:evaluate_agent",
               requires=("eurl-pose-rmpe",), code=_POSE_AGENT_CODE)


METHODS: dict[str, Row] = {
    "gt-bbox-deepmask": Row(
        name="gt-bbox-deepmask",
        tables={"eu-rl-table1": "GT Bbox-Deepmask"},
        data="coco/single",
        config="methods.deepmask:DeepMaskConfig",
        train="methods.deepmask:train_gt_bbox",
        evaluate="methods.deepmask:evaluate",
        code=("rlcv/models/crops.py", "rlcv/models/segnet.py"),
    ),
    "finetune-deepmask": Row(
        name="finetune-deepmask",
        tables={"eu-rl-table1": "Finetune-Deepmask"},
        data="coco/single",
        config="methods.deepmask:DeepMaskConfig",
        train="methods.deepmask:train_finetune",
        evaluate="methods.deepmask:evaluate",
        requires=("gt-bbox-deepmask",),
        code=("rlcv/models/crops.py", "rlcv/models/segnet.py"),
    ),
    # EU-RL Table 1 rows beyond the supervised ones, and active localisation (issue 5)
    "box-regressor": Row(
        name="box-regressor",
        tables={"active-loc-table1": "Box regressor"},
        data="coco/single",
        config="methods.eurl:RegressorConfig",
        train="methods.eurl:train_regressor",
        evaluate="methods.eurl:evaluate_regressor",
        code=_EURL_CODE,
    ),
    "regress-deepmask": Row(
        name="regress-deepmask",
        tables={"eu-rl-table1": "Regress-Deepmask"},
        data="coco/single",
        config="methods.eurl:PipelineConfig",
        train="methods.eurl:train_regress_deepmask",
        evaluate="methods.eurl:evaluate_regress_deepmask",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "regress-stn-deepmask": Row(
        name="regress-stn-deepmask",
        tables={"eu-rl-table1": "Regress-STN-Deepmask"},
        data="coco/single",
        config="methods.eurl:STNConfig",
        train="methods.eurl:train_stn",
        evaluate="methods.eurl:evaluate_stn",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "agent-deepmask": Row(
        name="agent-deepmask",
        tables={"eu-rl-table1": "Agent-Deepmask",
                "active-loc-table1": "Actor-critic agent (EU-RL)"},
        data="coco/single",
        config="methods.eurl_agent:AgentConfig",
        train="methods.eurl_agent:train_agent",
        evaluate="methods.eurl_agent:evaluate_agent_boxes",
        requires=("gt-bbox-deepmask",),
        code=_EURL_CODE,
    ),
    "regress-agent-deepmask": Row(
        name="regress-agent-deepmask",
        tables={"eu-rl-table1": "Regress-Agent-Deepmask"},
        data="coco/single",
        config="methods.eurl_agent:AgentConfig",
        train="methods.eurl_agent:train_agent",
        evaluate="methods.eurl_agent:evaluate_agent",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "regress-agent-deepmask-no-upgrade": Row(
        name="regress-agent-deepmask-no-upgrade",
        tables={"eu-rl-table1": "Regress-Agent-Deepmask w/o upgrade"},
        data="coco/single",
        config="methods.eurl_agent:AgentConfig",
        train="methods.eurl_agent:train_agent",
        evaluate="methods.eurl_agent:evaluate_agent",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "regress-dqn-deepmask": Row(
        name="regress-dqn-deepmask",
        tables={"eu-rl-table1": "Regress-DQN-Deepmask"},
        data="coco/single",
        config="methods.active_loc:DQNConfig",
        train="methods.active_loc:train_dqn",
        evaluate="methods.active_loc:evaluate_dqn",
        requires=("gt-bbox-deepmask", "box-regressor"),
        code=_EURL_CODE,
    ),
    "dqn-localizer": Row(
        name="dqn-localizer",
        tables={"active-loc-table1": "DQN agent (Caicedo & Lazebnik)"},
        data="coco/single",
        config="methods.active_loc:DQNConfig",
        train="methods.active_loc:train_dqn",
        evaluate="methods.active_loc:evaluate_dqn",
        code=_EURL_CODE,
    ),
    # Policy-gradient detector, Tables 1-2 (issue 8); fine-tuned rows start from the base
    # weights in the standard rows' checkpoints, "+ soft NMS" rows only evaluate differently
    "pgdet-standard": Row(
        name="pgdet-standard", tables={"pg-detector-table1": "Faster R-CNN standard"},
        data="coco/detection", config="methods.pgdetector:PGDetectorConfig",
        train="methods.pgdetector:train_standard", evaluate="methods.pgdetector:evaluate",
        code=_PGDET_CODE),
    "pgdet-standard-softnms": Row(
        name="pgdet-standard-softnms",
        tables={"pg-detector-table1": "Faster R-CNN standard + soft NMS"},
        data="coco/detection", config="methods.pgdetector:PGDetectorConfig",
        train="methods.pgdetector:train_eval_variant", evaluate="methods.pgdetector:evaluate",
        requires=("pgdet-standard",), code=_PGDET_CODE),
    "pgdet-ohem": Row(
        name="pgdet-ohem", tables={"pg-detector-table1": "Faster R-CNN OHEM"},
        data="coco/detection", config="methods.pgdetector:PGDetectorConfig",
        train="methods.pgdetector:train_finetune", evaluate="methods.pgdetector:evaluate",
        requires=("pgdet-standard",), code=_PGDET_CODE),
    "pgdet-ours-g0": Row(
        name="pgdet-ours-g0", tables={"pg-detector-table1": "Faster R-CNN ours (γ = 0)"},
        data="coco/detection", config="methods.pgdetector:PGDetectorConfig",
        train="methods.pgdetector:train_finetune", evaluate="methods.pgdetector:evaluate",
        requires=("pgdet-standard",), code=_PGDET_CODE),
    "pgdet-ours-g1": Row(
        name="pgdet-ours-g1", tables={"pg-detector-table1": "Faster R-CNN ours (γ = 1)",
                                      "pg-detector-table2": "Faster R-CNN (ours)"},
        data="coco/detection", config="methods.pgdetector:PGDetectorConfig",
        train="methods.pgdetector:train_finetune", evaluate="methods.pgdetector:evaluate",
        requires=("pgdet-standard",), code=_PGDET_CODE),
    "pgdet-ours-g1-softnms": Row(
        name="pgdet-ours-g1-softnms",
        tables={"pg-detector-table1": "Faster R-CNN ours (γ = 1) + soft NMS"},
        data="coco/detection", config="methods.pgdetector:PGDetectorConfig",
        train="methods.pgdetector:train_eval_variant", evaluate="methods.pgdetector:evaluate",
        requires=("pgdet-ours-g1",), code=_PGDET_CODE),
    "pgdet-fpn-standard": Row(
        name="pgdet-fpn-standard",
        tables={"pg-detector-table1": "Faster R-CNN with FPN standard"},
        data="coco/detection", config="methods.pgdetector:PGDetectorConfig",
        train="methods.pgdetector:train_standard", evaluate="methods.pgdetector:evaluate",
        code=_PGDET_CODE),
    "pgdet-fpn-ours-g1": Row(
        name="pgdet-fpn-ours-g1",
        tables={"pg-detector-table1": "Faster R-CNN with FPN ours (γ = 1)",
                "pg-detector-table2": "Faster R-CNN with FPN (ours)"},
        data="coco/detection", config="methods.pgdetector:PGDetectorConfig",
        train="methods.pgdetector:train_finetune", evaluate="methods.pgdetector:evaluate",
        requires=("pgdet-fpn-standard",), code=_PGDET_CODE),
    # ACIS, Tables 1-4 and Fig. 3 (issue 7); the pretrain rows hold the shared
    # pre-processing net, cVAE decoder and actor init the other rows start from
    "acis-pretrain-cvppp": Row(
        name="acis-pretrain-cvppp", tables={}, data="cvppp/ablation",
        config="methods.acis:AcisConfig", train="methods.acis:train_pretrain",
        evaluate="methods.acis:evaluate_pretrain", code=_ACIS_CODE),
    "acis-bl": Row(
        name="acis-bl", tables={"acis-table1": "BL", "acis-table2": "BL"},
        data="cvppp/ablation", config="methods.acis:AcisConfig", train="methods.acis:train_actor",
        evaluate="methods.acis:evaluate_table12", requires=("acis-pretrain-cvppp",),
        code=_ACIS_CODE),
    "acis-bl-trunc": Row(
        name="acis-bl-trunc",
        tables={"acis-table1": "BL-Trunc", "acis-table2": "BL-Trunc", "acis-fig3": "BL-Trunc"},
        data="cvppp/ablation", config="methods.acis:AcisConfig", train="methods.acis:train_actor",
        evaluate="methods.acis:evaluate_table12_fig3", requires=("acis-pretrain-cvppp",),
        code=_ACIS_CODE),
    "acis-ac-dice": Row(
        name="acis-ac-dice",
        tables={"acis-table1": "AC-Dice", "acis-table2": "AC-Dice", "acis-fig3": "AC-Dice"},
        data="cvppp/ablation", config="methods.acis:AcisConfig", train="methods.acis:train_actor",
        evaluate="methods.acis:evaluate_table12_fig3", requires=("acis-pretrain-cvppp",),
        code=_ACIS_CODE),
    "acis-ac-dice-nokl": Row(
        name="acis-ac-dice-nokl", tables={"acis-table1": "AC-Dice-NoKL"},
        data="cvppp/ablation", config="methods.acis:AcisConfig", train="methods.acis:train_actor",
        evaluate="methods.acis:evaluate_table1", requires=("acis-pretrain-cvppp",),
        code=_ACIS_CODE),
    "acis-ac-dice-nosp": Row(
        name="acis-ac-dice-nosp", tables={"acis-table1": "AC-Dice-NoSP"},
        data="cvppp/ablation", config="methods.acis:AcisConfig", train="methods.acis:train_actor",
        evaluate="methods.acis:evaluate_table1", requires=("acis-pretrain-cvppp",),
        code=_ACIS_CODE),
    "acis-ac-dice-test": Row(
        name="acis-ac-dice-test", tables={"acis-table3": "Ours (AC-Dice)"},
        data="cvppp/traintest", config="methods.acis:AcisConfig", train="methods.acis:train_actor",
        evaluate="methods.acis:evaluate_test", requires=("acis-pretrain-cvppp",), code=_ACIS_CODE),
    "acis-pretrain-kitti": Row(
        name="acis-pretrain-kitti", tables={}, data="kitti/cars",
        config="methods.acis:AcisConfig", train="methods.acis:train_pretrain",
        evaluate="methods.acis:evaluate_pretrain", code=_ACIS_CODE),
    "acis-kitti-bl-trunc": Row(
        name="acis-kitti-bl-trunc", tables={"acis-table4": "Ours (BL-Trunc)"},
        data="kitti/cars", config="methods.acis:AcisConfig", train="methods.acis:train_actor",
        evaluate="methods.acis:evaluate_kitti", requires=("acis-pretrain-kitti",), code=_ACIS_CODE),
    "acis-kitti-ac-iou": Row(
        name="acis-kitti-ac-iou", tables={"acis-table4": "Ours (AC-IoU)"},
        data="kitti/cars", config="methods.acis:AcisConfig", train="methods.acis:train_actor",
        evaluate="methods.acis:evaluate_kitti", requires=("acis-pretrain-kitti",), code=_ACIS_CODE),
    # CiSS-Net (issue 6): per dataset the frozen baseline, CiSS-Net, and its ablations
    "ciss-baseline-ade20k": Row(
        name="ciss-baseline-ade20k",
        tables={"ciss-net-table4": "Baseline", "ciss-net-table6": "Baseline (ours)"},
        data="ade20k/sceneparsing", config="methods.cissnet:BaselineConfig",
        train="methods.cissnet:train_baseline",
        evaluate="methods.cissnet:evaluate_baseline", code=_CISS_CODE),
    "ciss-net-ade20k": Row(
        name="ciss-net-ade20k",
        tables={"ciss-net-table1": "Step 2", "ciss-net-table3": "λ2=0.05",
                "ciss-net-table4": "CiSS-Net", "ciss-net-table5": "Ours",
                "ciss-net-table6": "CiSS-Net (Ours)"},
        data="ade20k/sceneparsing", config="methods.cissnet:CissConfig",
        train="methods.cissnet:train_ciss",
        evaluate="methods.cissnet:evaluate_ciss", requires=("ciss-baseline-ade20k",),
        code=_CISS_CODE),
    "ciss-ablations-ade20k": Row(
        name="ciss-ablations-ade20k",
        tables={"ciss-net-table2": "γ=0.9", "ciss-net-table3": "λ2=0.02",
                "ciss-net-table4": "Baseline+p-map", "ciss-net-table5": "w/o RL"},
        data="ade20k/sceneparsing", config="methods.cissnet:AblationConfig",
        train="methods.cissnet:train_ablations", evaluate="methods.cissnet:evaluate_ablations",
        requires=("ciss-baseline-ade20k",), code=_CISS_CODE),
    "ciss-baseline-cityscapes": Row(
        name="ciss-baseline-cityscapes",
        tables={"ciss-net-table4": "Baseline", "ciss-net-table8": "Baseline (ours)"},
        data="cityscapes/fine", config="methods.cissnet:BaselineConfig",
        train="methods.cissnet:train_baseline",
        evaluate="methods.cissnet:evaluate_baseline", code=_CISS_CODE),
    "ciss-net-cityscapes": Row(
        name="ciss-net-cityscapes",
        tables={"ciss-net-table1": "Step 2", "ciss-net-table3": "λ2=0.05",
                "ciss-net-table4": "CiSS-Net", "ciss-net-table5": "Ours",
                "ciss-net-table8": "CiSS-Net (Ours)"},
        data="cityscapes/fine", config="methods.cissnet:CissConfig",
        train="methods.cissnet:train_ciss",
        evaluate="methods.cissnet:evaluate_ciss", requires=("ciss-baseline-cityscapes",),
        code=_CISS_CODE),
    "ciss-ablations-cityscapes": Row(
        name="ciss-ablations-cityscapes",
        tables={"ciss-net-table2": "γ=0.9", "ciss-net-table3": "λ2=0.02",
                "ciss-net-table4": "Baseline+p-map", "ciss-net-table5": "w/o RL"},
        data="cityscapes/fine", config="methods.cissnet:AblationConfig",
        train="methods.cissnet:train_ablations", evaluate="methods.cissnet:evaluate_ablations",
        requires=("ciss-baseline-cityscapes",), code=_CISS_CODE),
    # EU-RL on MPII pose (issue 9): pose nets, the RMPE pipeline, the agent and ablations
    "eurl-pose-boxes": Row(
        name="eurl-pose-boxes", tables={"eu-rl-fig4": "Loose bbox model"}, data="mpii/multi",
        config="methods.eurl_pose:PoseNetConfig", train="methods.eurl_pose:train_posenets",
        evaluate="methods.eurl_pose:evaluate_posenets", code=_POSE_CODE),
    "eurl-pose-rmpe": Row(
        name="eurl-pose-rmpe", tables={"eu-rl-table2": "Fang et al. [11]"}, data="mpii/multi",
        config="methods.eurl_pose:RMPEConfig", train="methods.eurl_pose:train_rmpe",
        evaluate="methods.eurl_pose:evaluate_rmpe", requires=("eurl-pose-boxes",), code=_POSE_CODE),
    "eurl-pose": _pose_agent("eurl-pose", {"eu-rl-table2": "ours", "eu-rl-table3": "Ours, full",
                                           "eu-rl-fig4": "Upgrade at last step"}),
    "eurl-pose-ablations": _pose_agent("eurl-pose-ablations",
                                       {"eu-rl-table3": "(a) w/o feedback"},
                                       "methods.eurl_pose_agent:train_ablations"),
    "eurl-pose-every-step": _pose_agent("eurl-pose-every-step",
                                        {"eu-rl-fig4": "Upgrade at every step"}),
}


def get(name: str) -> Row:
    """The row called `name`; an unknown name lists the known ones."""
    if name not in METHODS:
        raise unknown_name("row", name, METHODS)
    return METHODS[name]
