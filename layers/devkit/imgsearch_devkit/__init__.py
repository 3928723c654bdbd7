"""imgsearch's developer and operator kit: the ``imgsearch`` command (``cli``), what it does to a
stack (``ops``, ``target``), the local stack (``local``) and the demo data (``demo``).

It imports the runtime (``imgsearch``), never the reverse, and no Lambda image installs it.
"""
