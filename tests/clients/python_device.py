"""The official Python device SDK (azure-iot-device 2.14) against the emulator, unchanged: what the
seed quickstart's provision_x509.py does (register over MQTT, connect to the assigned hub, send ten
messages), plus a twin read and a reported-properties patch. Port 8883 is fixed in the SDK.

Trust comes from SSL_CERT_FILE (the emulator's CA), as for an unchanged sample.
Credentials: X509_CERT_FILE + X509_KEY_FILE, or SYMMETRIC_KEY (base64, the device's key).
Prints one JSON line per step; tests/dps_emulator/mqtt_clients.rs checks them.
"""
import json
import os
import uuid

from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient, X509

HOST = os.environ["DPS_HOST"]
SCOPE = os.environ["ID_SCOPE"]
REGISTRATION_ID = os.environ["REGISTRATION_ID"]


def out(step, **fields):
    print(json.dumps(dict(step=step, **fields)), flush=True)


if os.environ.get("X509_CERT_FILE"):
    x509 = X509(cert_file=os.environ["X509_CERT_FILE"], key_file=os.environ["X509_KEY_FILE"])
    provisioning = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host=HOST, registration_id=REGISTRATION_ID, id_scope=SCOPE, x509=x509
    )
else:
    x509 = None
    provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=HOST,
        registration_id=REGISTRATION_ID,
        id_scope=SCOPE,
        symmetric_key=os.environ["SYMMETRIC_KEY"],
    )

result = provisioning.register()
state = result.registration_state
out(
    "register",
    status=result.status,
    assigned_hub=state.assigned_hub,
    device_id=state.device_id,
)
if result.status != "assigned":
    raise SystemExit(1)

if x509 is not None:
    device = IoTHubDeviceClient.create_from_x509_certificate(
        x509=x509, hostname=state.assigned_hub, device_id=state.device_id
    )
else:
    device = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=os.environ["SYMMETRIC_KEY"],
        hostname=state.assigned_hub,
        device_id=state.device_id,
    )
device.connect()
out("connect", connected=device.connected)

twin = device.get_twin()
out("twin", desired=twin.get("desired"), reported=twin.get("reported"))
device.patch_twin_reported_properties({"firmware": {"version": "1.2.3"}, "sample": "python"})
out("patch", reported=device.get_twin().get("reported"))

for i in range(1, 11):
    msg = Message("test wind speed " + str(i))
    msg.message_id = uuid.uuid4()
    msg.correlation_id = "correlation-1234"
    msg.custom_properties["count"] = str(i)
    msg.content_type = "text/plain"
    device.send_message(msg)
out("telemetry", sent=10)
device.shutdown()
