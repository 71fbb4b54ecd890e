"""Policy-gradient detector (Rao et al. 2018), Tables 1-2: `detector`."""
