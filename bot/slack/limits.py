"""Slack's limits (shared/slack-facts.md), defined once for every Block Kit builder."""

MAX_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
SECTION_TEXT = 3000
FIELD_TEXT = 2000
SECTION_FIELDS = 10
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
ID_LENGTH = 255
MODAL_TITLE = 24
PRIVATE_METADATA = 3000
INPUT_LENGTH = 3000
CONTEXT_ELEMENTS = 10
ACTION_ELEMENTS = 25
MESSAGE_TEXT = 40000
# Slack refuses a message whose blocks hold more than about 12,000 characters of text in all with
# `msg_blocks_too_long`, a limit it does not document (bolt-js issues 2509 and 2867: refused at ~13,200
# characters in one case, at 11,341 counted in another, "12,000 text characters with a buffer for block
# containers" by Slack's account). Messages are built to stay under BLOCKS_TEXT_BUDGET, with room to spare.
BLOCKS_TEXT = 12000
BLOCKS_TEXT_BUDGET = 10000
# Slash command text read at most: room for a pasted e-mail (support-reply takes one) and a few
# milliseconds to split; a megabyte held the event loop for minutes. Longer text is refused unread.
COMMAND_TEXT = 12000
