#!/usr/bin/env python3
"""Write fixtures/osv/npm-all.zip: the fixture OSV records flat, as osv.dev's npm/all.zip lays them out."""
import os
import zipfile

root = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'osv')
out = os.path.join(root, 'npm-all.zip')
with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
    for folder, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.endswith('.json'):
                info = zipfile.ZipInfo(f, date_time=(2026, 12, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(os.path.join(folder, f), 'rb') as fh:
                    z.writestr(info, fh.read())
print(out)
