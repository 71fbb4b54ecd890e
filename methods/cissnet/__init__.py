"""CiSS-Net, context-reinforced semantic segmentation (Zhou et al. 2019): the rows in
`rows`; the two datasets' common view `data`, the decision process `rl`, figures `plots`."""
