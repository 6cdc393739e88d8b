"""``python -m gridledger.node --role ROLE --config FILE``: run one node process.

The same command as ``gridledger node``; ``cluster up`` starts its node processes this way.
"""

import typer

from gridledger.cli.node import node

typer.run(node)
