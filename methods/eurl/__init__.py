"""EU-RL (Xie et al. 2018): the agent between detector and recognition network, with the
environment upgrade. COCO single-object rows (Table 1): `deepmask`, `regress`, `agent`;
MPII multi-person pose rows (Tables 2-3, Fig. 4): `pose_data`, `pose`, `pose_agent`."""
