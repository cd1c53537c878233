"""Assets, checks, resources and jobs, one file each."""
