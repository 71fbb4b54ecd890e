"""Active object localisation with a DQN (Caicedo & Lazebnik 2015, the survey slides):
`dqn`, alone and inside EU-RL's Table 1 pipeline."""
