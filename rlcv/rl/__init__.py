"""Reinforcement-learning building blocks shared by the methods.

    boxenv.py        BoxEnv: a batch of box-refinement episodes (EU-RL Section 3.2, the 9
                     actions of Section 4.1), rewards EURLReward (Eq. 1) and CaicedoReward,
                     pluggable Recognizer / loss; run_policy for greedy rollouts
    actor_critic.py  TDActorCritic, train_episodes (Algorithm 1, with the environment
                     upgrade and the backprop-into-recognition switch), greedy (Algorithm 2)
    dqn.py           ReplayMemory, DQNAgent, guided ε-greedy exploration (Caicedo &
                     Lazebnik 2015), train_episodes, greedy
    advantage.py     k-step returns and advantage actor-critic terms (CiSS-Net)
    potential.py     ACIS's state potential reward and critic targets
    reinforce.py     REINFORCE for detection-candidate selection (policy-gradient detector)

The box environment in a new pipeline: plug in its recognition network (`Recognizer`:
net, crop size, `observe` for the agent's s^R channels, `train_loss` for the upgrade)
and its loss (`loss_fn(outputs, boxes, targets) -> (B,)`, the L of Eq. 1); `BoxEnv`,
`TDActorCritic`, `train_episodes` / `greedy` and `upgrade_environment` stay as they are.
"""
