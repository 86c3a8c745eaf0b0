"""What a job leaves behind as it trains, whichever engine trains it: its line, trackers,
curves, diagnostics.
"""
