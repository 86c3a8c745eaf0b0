"""What spans the runs of a sweep: the summary table and its plots."""
