#!/usr/bin/env python3
"""Makes the desk's pass and fail sounds (assets/sounds/*.wav) from sine tones: 16-bit mono PCM at
22,050 Hz, with short fades so they do not click. Ours, so no licence question; run again to
change them."""
import math, struct, wave, pathlib

RATE = 22050
OUT = pathlib.Path(__file__).resolve().parent.parent / "assets" / "sounds"

def tone(freq, secs, volume=0.5):
    n = int(RATE * secs)
    fade = int(RATE * 0.01)
    out = []
    for i in range(n):
        env = min(1.0, i / fade, (n - i) / fade)
        s = math.sin(2 * math.pi * freq * i / RATE)
        if freq < 300:  # the fail buzz: add odd harmonics, a rougher sound that reads as "wrong"
            s = 0.6 * s + 0.3 * math.sin(6 * math.pi * freq * i / RATE) + 0.1 * math.sin(10 * math.pi * freq * i / RATE)
        out.append(int(32767 * volume * env * s))
    return out

def silence(secs):
    return [0] * int(RATE * secs)

def write(name, samples):
    OUT.mkdir(parents=True, exist_ok=True)
    with wave.open(str(OUT / name), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack("<%dh" % len(samples), *samples))

write("pass.wav", tone(880, 0.09) + silence(0.03) + tone(1320, 0.14))
write("fail.wav", tone(180, 0.25) + silence(0.08) + tone(180, 0.35))
