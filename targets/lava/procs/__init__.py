"""snnc's Lava processes. Lava re-executes every module in this folder when it compiles a network, so the
modules here define classes only: no work at import time, no imports of the rest of snnc."""
