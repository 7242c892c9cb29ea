"""The package's own error type.

Every problem with what the user gave (a file, a channel, window sizes, keypoints, options)
raises :class:`ScaleVAEError` with a message that says what is wrong and how to fix it.
The command line turns it into one line on stderr and exit code 2, without a traceback.
"""


class ScaleVAEError(ValueError):
    """A problem with the user's input or options; the message names the fix."""
