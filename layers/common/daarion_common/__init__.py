"""Code shared by every DAARION Lambda function.

Each module is one concern and imports its heavy dependencies lazily, so a function pays
only for what it uses on its cold path.
"""

__version__ = "0.1.0"
