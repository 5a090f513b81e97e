# The seed page's `requests` client, with its line breaks restored. Two changes, both
# to the URL: the page writes JavaScript's `${restate}` inside Python f-strings (which
# would send "$http://..."), here `{restate}`; and the ingress URL may be given as the
# first argument (examples/07_restate_signup.py serves on a free port, not 8080).
# Between submitting and attaching, someone must click the mailed link (approveEmail):
# the example does that while this script waits in the attach.
import sys

import requests

restate = "http://localhost:8080"
if len(sys.argv) > 1:
    restate = sys.argv[1]

workflow_id = "myUser123"
payload = {"email": "user@user.com", "name": "Pete"}
headers = {"Content-Type": "application/json"}

# 1. Submit the workflow
url = f"{restate}/signupWorkflow/{workflow_id}/run/send"
response = requests.post(url, json=payload, headers=headers)
print(f"  [requests] submitted: {response.status_code} {response.json()}", flush=True)

# Do something else, with workflow running in the background

# 2. Attach back to the workflow
attach_url = f"{restate}/restate/workflow/signupWorkflow/{workflow_id}/attach"
response = requests.get(attach_url)
print(f"  [requests] attached: {response.status_code} {response.text}", flush=True)
