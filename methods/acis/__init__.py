"""ACIS, actor-critic instance segmentation (Araslanov et al. 2019), Tables 1-4 and Fig. 3:
the rows in `rows`; data and pre-training `train`, actor-critic `actor`, inference and
scores `evaluate`, figures `plots`."""
