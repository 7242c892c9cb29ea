"""Old keyword names of the public functions, still accepted with a warning.

One name per concept across the command line and the Python API: the input is ``images``
(a file, an array or a stack), the folder a call writes is ``out``, a finished run's folder is
``run_dir``. Keywords the API once spelled otherwise keep working for a while: the call goes
through with a :class:`FutureWarning` naming the new spelling. FutureWarning, not
DeprecationWarning: the people calling these are microscopists in notebooks and pipeline
scripts, the end users Python's FutureWarning is for; a DeprecationWarning is hidden outside
``__main__`` and would leave a pipeline silent until the name is removed.
"""

from __future__ import annotations

import functools
import warnings


def renamed_keywords(**old_to_new):
    """Accept the old keyword ``old`` as ``new`` (with a FutureWarning) for the decorated function.

    Examples
    --------
    >>> @renamed_keywords(image="images")
    ... def f(images):
    ...     return images
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     f(image=3), caught[0].category.__name__
    (3, 'FutureWarning')
    """
    def decorate(func):
        @functools.wraps(func)
        def call(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{func.__name__}() got both {old}= and {new}=; "
                                        f"give {new}= only")
                    warnings.warn(f"{func.__name__}({old}=...) is now {func.__name__}({new}=...); "
                                  f"the old name will stop working", FutureWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)
        return call
    return decorate
