"""The two ways to train jobs: alone (single/), or K at once as one stacked network
(packed/). They only train.
"""
