"""``python -m gridledger.node --role ROLE --config FILE``: run one node process.

The same command as ``gridledger node``, without loading every other area's command line; ``cluster`` starts its
node processes this way.
"""

import typer

from gridledger.node.cli import node

typer.run(node)
