#!/usr/bin/python3
"""Write a secret into a file on the host, from memory, without logging it."""
# ruff: noqa: E402  (Ansible modules keep DOCUMENTATION above the imports)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: altmesh_secret_file
short_description: Write a secret into a file on the host
description:
  - Hands a secret read on one host to another through the controller's memory only, e.g. the
    primary's zone-transfer TSIG key to secondaries, the dashboard's TSIG key and read-only rndc
    key to the dashboard host, a relay token made on the dashboard to its relay. The content
    arrives as a no_log module argument (over SSH with pipelining it travels on stdin), is compared
    with the file and written atomically only when it differs. Neither the content nor a diff is
    returned.
  - One implementation for every altmesh role (roles/altmesh_common/library; the bind_alt role
    links to it).
options:
  path: {description: File to write, type: path, required: true}
  content: {description: The secret text, type: str, required: true, no_log: true}
  owner: {description: Owner, type: str, default: root}
  group: {description: Group, type: str, default: root}
  mode: {description: Permissions, type: raw, default: '0600'}
author: altmesh
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "content": {"type": "str", "required": True, "no_log": True},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "mode": {"type": "raw", "default": "0600"},
        },
        supports_check_mode=True,
    )
    path: str = module.params["path"]
    wanted = module.params["content"].encode()
    try:
        with open(path, "rb") as handle:
            content_differs = handle.read() != wanted
    except FileNotFoundError:
        content_differs = True
    except OSError as error:
        module.fail_json(msg=f"cannot read {path}: {error.strerror}")
    changed = content_differs
    if content_differs and not module.check_mode:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            module.fail_json(msg=f"the directory {directory} does not exist")
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".secret.")
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(wanted)
        os.replace(temporary, path)
    if os.path.exists(path):
        file_args = module.load_file_common_arguments(
            {
                "path": path,
                "owner": module.params["owner"],
                "group": module.params["group"],
                "mode": module.params["mode"],
            }
        )
        changed = module.set_fs_attributes_if_different(file_args, changed)
    module.exit_json(changed=changed, path=path)


if __name__ == "__main__":
    main()
