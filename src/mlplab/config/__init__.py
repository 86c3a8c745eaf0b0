"""Config handling: the command line checked before torch, the composed config checked,
stored configs read as data.
"""
