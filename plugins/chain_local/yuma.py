"""Yuma consensus lives in the core (:mod:`tnode.yuma`), so every chain backend runs the same epoch.

This name stays for the embedded chain's own modules and older imports: it *is* :mod:`tnode.yuma`
(the same module object, private helpers included).
"""

import sys

from tnode import yuma as _yuma

sys.modules[__name__] = _yuma
