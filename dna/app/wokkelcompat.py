"""
What wokkel 18.0.0 needs of Twisted and current Twisted no longer has.

wokkel 18.0.0 (the last release) was written for Twisted 18: its modules
import Python 2 helpers from L{twisted.python.compat} and the constants
module Twisted moved out into the C{constantly} package. On the Twisted dna
pins, two of those are gone, so C{wokkel.data_form}, C{wokkel.disco},
C{wokkel.ping}, C{wokkel.pubsub} and C{wokkel.muc} fail to import:

    - C{twisted.python.compat._PY3} (C{data_form}, and through it C{disco},
      C{ping}, C{pubsub}, C{muc}): always true on Python 3;
    - C{twisted.python.constants} (C{muc}: C{Values}, C{ValueConstant}):
      now C{constantly}, which Twisted itself depends on.

The other names wokkel imports from L{twisted.python.compat} (C{unicode},
C{iteritems}, C{itervalues}, C{StringType}) are still there, deprecated; they
are restored too, should a later Twisted drop them. Nothing that exists is
replaced.

Nothing is patched on import of this module: call L{install} (the embedding
API, L{dna.app.embed}, does it when asked with C{wokkelCompatibility=True}).
dna itself uses only C{wokkel.component}, which needs none of this.
"""

import sys
import types

#: What wokkel imports from L{twisted.python.compat}, with Python 3 values.
COMPAT_NAMES = {
    "_PY3": True,
    "unicode": str,
    "StringType": str,
    "iteritems": lambda d: iter(d.items()),
    "itervalues": lambda d: iter(d.values()),
}

#: What wokkel imports from C{twisted.python.constants}, all in C{constantly}.
CONSTANTS_NAMES = ("NamedConstant", "Names", "ValueConstant", "Values",
                   "FlagConstant", "Flags")


def missing():
    """
    What L{install} would restore.

    @return: A L{list} of dotted names absent from Twisted, such as
        C{["twisted.python.compat._PY3", "twisted.python.constants"]}.
    @rtype: L{list} of L{str}
    """
    from twisted.python import compat

    absent = [f"twisted.python.compat.{name}" for name in COMPAT_NAMES
              if name not in vars(compat)]
    try:
        import twisted.python.constants  # noqa: F401
    except ImportError:
        absent.append("twisted.python.constants")
    return absent


def install():
    """
    Restore in Twisted what wokkel 18.0.0 imports and Twisted dropped, so
    that all of wokkel's modules import. Idempotent; existing names are left
    alone.

    @return: The dotted names it restored (empty when nothing was missing).
    @rtype: L{list} of L{str}
    """
    import twisted.python
    from twisted.python import compat

    restored = missing()
    for name, value in COMPAT_NAMES.items():
        if name not in vars(compat):
            setattr(compat, name, value)
    if "twisted.python.constants" in restored:
        import constantly

        module = types.ModuleType(
            "twisted.python.constants",
            "constantly's constants where Twisted once had them, for wokkel "
            "(installed by dna.app.wokkelcompat).")
        for name in CONSTANTS_NAMES:
            setattr(module, name, getattr(constantly, name))
        sys.modules["twisted.python.constants"] = module
        twisted.python.constants = module
    return restored
