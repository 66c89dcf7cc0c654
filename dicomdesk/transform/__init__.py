"""Changes made to objects in flight: de-identification, tag edits, (de)compression.

Nothing here touches the user's files: ``rewrite.rewrite_file`` builds a transformed copy in a
temporary file (bounded memory: the pixel data is copied in chunks, never loaded, unless its
encoding must change) which a storage SCU streams like any other file, or an export keeps.

Kept out of ``dicomdesk.operations`` imports on purpose: the CLI and the window import these
modules only when an option asks for them (pydicom's pixel plugins and the profile table are
not needed for a plain send).
"""
