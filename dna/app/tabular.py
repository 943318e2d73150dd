"""
Tables for people: the ASCII tables of C{dna-demo} and C{dna-ctl}, drawn
like the figures of draft-ietf-xmpp-dna-01 section 4.
"""


def formatTable(headers, rows):
    """
    An ASCII table drawn like the figures of draft-ietf-xmpp-dna-01 section
    4; a cell given as a list is one line per item.

    @param headers: The column titles.
    @param rows: Lists of cells, C{str} or lists of C{str}.
    @return: The lines, joined (C{str}).
    """
    cells = [[cell if isinstance(cell, list) else [str(cell)] for cell in row]
             for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max([widths[i]] + [len(line) for line in cell])
    rule = "+" + "+".join("-" * (width + 2) for width in widths) + "+"

    def line(values):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    lines = [rule, line(headers), rule]
    for row in cells:
        for k in range(max(1, max(len(cell) for cell in row))):
            lines.append(line([cell[k] if k < len(cell) else "" for cell in row]))
    lines.append(rule)
    return "\n".join(lines)
