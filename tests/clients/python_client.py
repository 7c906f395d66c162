"""The official Python service SDK (azure-iot-deviceprovisioning 1.0.0b1) against the emulator.

Plain HTTP to 127.0.0.1 (the SDK takes an http:// endpoint; its SAS `sr` is then the encoded URL).
Prints one JSON line per step; tests/dps_emulator/official_clients.rs checks them.
"""
import base64
import json
import os
import sys
import time

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.iot.deviceprovisioning import DeviceProvisioningClient

ENDPOINT = os.environ["DPS_ENDPOINT"]
KEY = os.environ["DPS_KEY"]
SYNC = os.environ["DPS_SYNC_DIR"]


def client(key):
    return DeviceProvisioningClient(
        endpoint=ENDPOINT,
        credential=AzureNamedKeyCredential("provisioningserviceowner", key),
        retry_total=0,
    )


def out(step, **fields):
    print(json.dumps(dict(step=step, **fields)), flush=True)


def status_of(call):
    try:
        call()
        return 200
    except HttpResponseError as e:
        return e.status_code


def main():
    svc = client(KEY)
    enrollment = {"registrationId": "official-1", "attestation": {"type": "symmetricKey"}}
    created = svc.enrollment.create_or_update(id="official-1", enrollment=enrollment)
    out("create", etag_present=bool(created.get("etag")))
    out("create_again", status=status_of(lambda: svc.enrollment.create_or_update(id="official-1", enrollment=enrollment)))

    got = svc.enrollment.get(id="official-1")
    out("get", registrationId=got["registrationId"], has_keys="primaryKey" in got["attestation"].get("symmetricKey", {}))

    old_etag = got["etag"]
    got["provisioningStatus"] = "disabled"
    updated = svc.enrollment.create_or_update(id="official-1", enrollment=got, if_match=old_etag)
    out("update", provisioningStatus=updated["provisioningStatus"])
    out("update_stale_etag", status=status_of(lambda: svc.enrollment.create_or_update(id="official-1", enrollment=got, if_match=old_etag)))

    att = svc.enrollment.get_attestation_mechanism(id="official-1")
    out("attestation", primary_key_bytes=len(base64.b64decode(att["symmetricKey"]["primaryKey"])))

    svc.enrollment.delete(id="official-1", if_match=updated["etag"])
    out("delete", ok=True)
    out("get_deleted", status=status_of(lambda: svc.enrollment.get(id="official-1")))

    batch = [{"registrationId": "official-bulk-%02d" % i, "attestation": {"type": "none"}} for i in range(12)]
    ok = True
    for i in range(0, len(batch), 10):
        r = svc.enrollment.run_bulk_operation(bulk_operation={"mode": "create", "enrollments": batch[i:i + 10]})
        ok = ok and r["isSuccessful"]
    out("bulk_create", isSuccessful=ok)
    again = svc.enrollment.run_bulk_operation(bulk_operation={"mode": "create", "enrollments": batch[:2]})
    out("bulk_again", isSuccessful=again["isSuccessful"], first_error_code=again["errors"][0]["errorCode"])

    sizes, ids = [], set()
    for page in svc.enrollment.query(query_specification={"query": "SELECT * FROM enrollments"}, top=4).by_page():
        items = list(page)
        sizes.append(len(items))
        ids.update(e["registrationId"] for e in items)
        if len(sizes) > 20:
            break
    out("query", pages=sizes, unique=len(ids))

    group = svc.enrollment_group.create_or_update(
        id="official-group", enrollment_group={"enrollmentGroupId": "official-group", "attestation": {"type": "symmetricKey"}}
    )
    out("group_create", enrollmentGroupId=group["enrollmentGroupId"])
    gatt = svc.enrollment_group.get_attestation_mechanism(id="official-group")
    out("group_attestation", primary_key_bytes=len(base64.b64decode(gatt["symmetricKey"]["primaryKey"])))
    groups = list(svc.enrollment_group.query(query_specification={"query": "SELECT * FROM enrollmentGroups"}))
    out("group_query", count=len(groups))

    # A device registers through the group (the Rust side does it, through the device API).
    open(os.path.join(SYNC, "group-created"), "w").write("ok")
    for _ in range(200):
        if os.path.exists(os.path.join(SYNC, "member-registered")):
            break
        time.sleep(0.05)
    state = svc.device_registration_state.get(id="official-member-1")
    out("registration_get", status=state["status"])
    regs = list(svc.device_registration_state.query(id="official-group"))
    out("registration_query", count=len(regs))
    svc.device_registration_state.delete(id="official-member-1")
    out("registration_delete", ok=True)
    svc.enrollment_group.delete(id="official-group")

    # The connection string the emulator prints, as is: HTTPS to its listener, trusting its CA.
    cs, ca = os.environ.get("DPS_CONNECTION_STRING"), os.environ.get("DPS_CA_FILE")
    if cs and ca:
        via_cs = DeviceProvisioningClient.from_connection_string(cs, connection_verify=ca, retry_total=0)
        out("https_connection_string", registrationId=via_cs.enrollment.get(id="official-bulk-00")["registrationId"])

    wrong = client(base64.b64encode(b"not the key of this instance").decode())
    out("wrong_key", status=status_of(lambda: wrong.enrollment.get(id="official-bulk-00")))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report anything, exit non-zero
        print("python client failed: %r" % (e,), file=sys.stderr)
        raise
