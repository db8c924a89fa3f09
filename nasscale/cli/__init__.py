"""The command line: ``app.py`` holds the command table and the entry point, ``output.py`` the consoles,
``--json`` and the options shared by several commands, and each other module one group of commands.

A command parses its flags, calls one library function and prints the result. May import every other
package; nothing imports it. Torch-heavy library modules are imported inside the commands that need them,
so ``nasscale --help`` and the analytic commands start without torch.
"""
