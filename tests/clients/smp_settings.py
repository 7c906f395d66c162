"""Writes, saves and reads back one Zephyr setting with smpclient's own requests (SMP group 3).
Usage: python smp_settings.py <port> <name> <value>
"""
import asyncio
import sys

from smpclient import SMPClient
from smpclient.generics import error, success
from smpclient.requests.settings_management import ReadSetting, SaveSettings, WriteSetting
from smpclient.transport.serial import SMPSerialTransport


async def main(port: str, name: str, value: str) -> int:
    async with SMPClient(SMPSerialTransport(), port) as client:
        for request in (WriteSetting(name=name, val=value.encode()), SaveSettings()):
            response = await client.request(request)
            if not success(response):
                print(f"refused: {response}")
                return 1
        response = await client.request(ReadSetting(name=name))
        if error(response):
            print(f"refused: {response}")
            return 1
        print(f"read back: {response.val.decode()}")
        missing = await client.request(ReadSetting(name=name + "-missing"))
        print(f"missing: {'error' if error(missing) else 'found'}")
    return 0


sys.exit(asyncio.run(main(*sys.argv[1:4])))
