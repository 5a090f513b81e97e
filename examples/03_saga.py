"""A saga: book a trip (flight, hotel, car) and undo the bookings that were made when a
later one fails.

Each booking is a durable ``ctx.run`` step. Before a step runs, its compensation is
pushed on a list; when a step fails with ``TerminalError`` the handler runs the
compensations in reverse order (each one a durable step too) and re-raises, so the
error reaches the caller. Non-terminal exceptions are retried instead, so only a
``TerminalError`` ("no car available") starts the compensation.

Why durable steps matter here: after a crash the handler is replayed; bookings whose
results were journaled are not made again, and the compensation list is rebuilt by the
replay itself, so the undo after a restart covers exactly the bookings that were made.

Run: python examples/03_saga.py [DATA_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trio

import actors


@dataclass(frozen=True)
class TripRequest:
    traveller: str
    city: str


class Bookings:
    """A stand-in for the flight, hotel and car APIs. Cars in `sold_out` cities fail
    with a TerminalError: retrying would not help, so the saga must undo."""

    def __init__(self, sold_out: set[str]) -> None:
        self.sold_out = sold_out
        self.active: set[str] = set()

    def book(self, what: str, trip: TripRequest) -> str:
        if what == "car" and trip.city in self.sold_out:
            print(f"  {what} for {trip.traveller} in {trip.city}: none available")
            raise actors.TerminalError(f"no car available in {trip.city}", status_code=409)
        booking = f"{what}-{trip.traveller}-{trip.city}"
        self.active.add(booking)
        print(f"  booked {booking}")
        return booking

    def cancel(self, what: str, trip: TripRequest) -> None:
        # Compensations must be idempotent and accept "no such booking": the undo of a
        # step is registered before the step runs, and after a crash it may run twice.
        booking = f"{what}-{trip.traveller}-{trip.city}"
        if booking in self.active:
            self.active.remove(booking)
            print(f"  cancelled {booking}")
        else:
            print(f"  nothing to cancel for {what}")


class Trips(actors.Service):
    def __init__(self, bookings: Bookings) -> None:
        self.bookings = bookings

    @actors.handler
    async def book(self, ctx: actors.Context, trip: TripRequest) -> list[str]:
        to_undo: list[str] = []
        booked: list[str] = []
        try:
            for what in ("flight", "hotel", "car"):
                # Register the undo before the step: if the step's effect happened but
                # its failure or result was lost, the undo still runs.
                to_undo.append(what)
                booked.append(await ctx.run(f"book {what}", self.bookings.book, what, trip))
        except actors.TerminalError:
            for what in reversed(to_undo):
                await ctx.run(f"cancel {what}", self.bookings.cancel, what, trip)
            raise  # the caller gets the original error
        return booked


async def main(data_dir: Path) -> None:
    print(f"data directory: {data_dir}")
    service = Trips(Bookings(sold_out={"Venice"}))
    async with actors.open_runtime(data_dir, [service]) as rt:
        print("trip to Lisbon:")
        result = await rt.call(Trips.book, TripRequest("ada", "Lisbon"))
        print("  ->", result)

        print("trip to Venice:")
        try:
            await rt.call(Trips.book, TripRequest("bob", "Venice"))
        except actors.TerminalError as exc:
            print(f"caller got TerminalError ({exc.status_code}): {exc}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            trio.run(main, Path(tmp) / "saga")
