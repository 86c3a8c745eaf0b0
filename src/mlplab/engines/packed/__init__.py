"""The packed engine: K jobs' networks stacked into one; each job's record comes from its
slice.
"""
