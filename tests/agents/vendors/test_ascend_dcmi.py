"""Huawei Ascend through libdcmi.so: a stub DCMI library built here, read through ctypes, and
compared with what the npu-smi reader reads from the recorded output of the same devices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.vendors import ascend
from agents.backends.vendors.library import LibraryUnavailable
from agents.backends.vendors.snapshot import MIB, NodeSnapshot, SnapshotError
from tests.agents.vendors.helpers import build_stub_library, fixture, install_fake_tool

NOT_SUPPORT = -8255
DEVICE_NOT_EXIST = -8008
HCCS, PHB, SIO = 3, 2, 6
VDIE_NPU0 = (0x2A9C1A04, 0x20B03816, 0x8D100228, 0x14014010, 0x40040505)
UCE_TEXT = "node type=HBM, sensor type=Memory, multi-bit ECC error (uncorrectable)"
LINK_TEXT = "node type=NIC, sensor type=Link, RoCE port link down"


@dataclass
class StubChip:
    """What the stub library answers for one (card, device)."""

    card: int
    dev: int
    logic: int
    name: str = "910B2C"
    unit_type: int = 0  # 0 NPU, 1 MCU
    phy: int = 0
    power: int | None = 950  # 0.1 W; None answers NOT_SUPPORT
    temp: int = 40
    util: int = 0
    hbm: tuple[int, int] | None = (65536, 1024)  # (total MB, used MB); None answers NOT_SUPPORT
    ddr: tuple[int, int] | None = None  # (total MB, available MB)
    bus: tuple[int, int, int, int] = (0, 1, 0, 0)
    die: Sequence[int] | None = None
    health: int | None = 0  # None answers DEVICE_NOT_EXIST
    codes: Sequence[int] = ()
    text: str = ""


@dataclass
class StubNode:
    chips: list[StubChip]
    mcu_power: dict[int, int] = field(default_factory=dict)  # card -> 0.1 W
    links: dict[tuple[int, int, int, int], int] | None = field(default_factory=dict)  # None: no topo call
    init_rc: int = 0

    def cards(self) -> list[int]:
        return sorted({c.card for c in self.chips})


_C_TEMPLATE = r"""
#include <string.h>
struct chip_info { unsigned char chip_type[32]; unsigned char chip_name[32]; unsigned char chip_ver[32];
                   unsigned int aicore_cnt; };
struct pcie_info_all { unsigned int venderid, subvenderid, deviceid, subdeviceid; int domain;
                       unsigned int bdf_busid, bdf_deviceid, bdf_funcid; unsigned char reserve[32]; };
struct die_id { unsigned int soc_die[5]; };
struct hbm_info { unsigned long long memory_size; unsigned int freq; unsigned long long memory_usage;
                  int temp; unsigned int bandwith_util_rate; };
struct memory_info { unsigned long long memory_size, memory_available; unsigned int freq;
                     unsigned long hugepagesize, hugepages_total, hugepages_free; unsigned int utiliza;
                     unsigned char reserve[60]; };
typedef struct {
    int card, dev, type, logic, phy; const char *name; int power_rc, power, temp; unsigned util;
    int hbm_rc; unsigned long long hbm_total, hbm_used; int ddr_rc; unsigned long long ddr_total, ddr_avail;
    int domain; unsigned bus, devno, func; int die_rc; unsigned die[5]; int health_rc; unsigned health;
    int ncodes; unsigned codes[4]; const char *text;
} chip_t;
typedef struct { int c1, d1, c2, d2, kind; } link_t;
static const chip_t CHIPS[] = { %(chips)s };
static const int CARDS[] = { %(cards)s };
static const int MCU[][2] = { %(mcu)s };
static const link_t LINKS[] = { %(links)s };
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const chip_t *find(int card, int dev) {
    for (int i = 0; i < COUNT(CHIPS); i++)
        if (CHIPS[i].card == card && CHIPS[i].dev == dev) return &CHIPS[i];
    return 0;
}
#define CHIP(card, dev) const chip_t *c = find(card, dev); if (!c) return -8008;

int dcmi_init(void) { return %(init_rc)d; }
int dcmi_get_card_list(int *num, int *list, int len) {
    *num = COUNT(CARDS);
    for (int i = 0; i < COUNT(CARDS) && i < len; i++) list[i] = CARDS[i];
    return 0;
}
int dcmi_get_device_num_in_card(int card, int *num) {
    *num = 0;
    for (int i = 0; i < COUNT(CHIPS); i++) *num += CHIPS[i].card == card;
    return 0;
}
int dcmi_get_device_type(int card, int dev, int *type) { CHIP(card, dev) *type = c->type; return 0; }
int dcmi_get_device_logic_id(int *logic, int card, int dev) { CHIP(card, dev) *logic = c->logic; return 0; }
int dcmi_get_device_phyid_from_logicid(unsigned logic, unsigned *phy) {
    for (int i = 0; i < COUNT(CHIPS); i++)
        if (CHIPS[i].type == 0 && CHIPS[i].logic == (int)logic) { *phy = CHIPS[i].phy; return 0; }
    return -8007;
}
int dcmi_get_device_chip_info(int card, int dev, struct chip_info *info) {
    CHIP(card, dev) memset(info, 0, sizeof *info);
    strcpy((char *)info->chip_type, "Ascend"); strncpy((char *)info->chip_name, c->name, 31);
    return 0;
}
int dcmi_get_device_pcie_info_v2(int card, int dev, struct pcie_info_all *p) {
    CHIP(card, dev) memset(p, 0, sizeof *p); p->venderid = 0x19e5; p->domain = c->domain;
    p->bdf_busid = c->bus; p->bdf_deviceid = c->devno; p->bdf_funcid = c->func; return 0;
}
int dcmi_get_device_die_v2(int card, int dev, int type, struct die_id *die) {
    CHIP(card, dev) if (type != 1) return -8001; if (c->die_rc) return c->die_rc;
    memcpy(die->soc_die, c->die, sizeof c->die); return 0;
}
int dcmi_get_device_health(int card, int dev, unsigned *health) {
    CHIP(card, dev) if (c->health_rc) return c->health_rc; *health = c->health; return 0;
}
int dcmi_get_device_errorcode_v2(int card, int dev, int *count, unsigned *list, unsigned len) {
    CHIP(card, dev) *count = c->ncodes;
    for (int i = 0; i < c->ncodes && i < (int)len; i++) list[i] = c->codes[i];
    return 0;
}
int dcmi_get_device_errorcode_string(int card, int dev, unsigned code, unsigned char *buf, int size) {
    CHIP(card, dev) strncpy((char *)buf, c->text, size - 1); buf[size - 1] = 0; return 0;
}
int dcmi_get_device_power_info(int card, int dev, int *power) {
    CHIP(card, dev) if (c->power_rc) return c->power_rc; *power = c->power; return 0;
}
int dcmi_get_device_temperature(int card, int dev, int *temp) { CHIP(card, dev) *temp = c->temp; return 0; }
int dcmi_get_device_utilization_rate(int card, int dev, int type, unsigned *rate) {
    CHIP(card, dev) if (type != 2) return -8001; *rate = c->util; return 0;
}
int dcmi_get_device_hbm_info(int card, int dev, struct hbm_info *hbm) {
    CHIP(card, dev) if (c->hbm_rc) return c->hbm_rc; memset(hbm, 0, sizeof *hbm);
    hbm->memory_size = c->hbm_total; hbm->memory_usage = c->hbm_used; return 0;
}
int dcmi_get_device_memory_info_v3(int card, int dev, struct memory_info *mem) {
    CHIP(card, dev) if (c->ddr_rc) return c->ddr_rc; memset(mem, 0, sizeof *mem);
    mem->memory_size = c->ddr_total; mem->memory_available = c->ddr_avail; return 0;
}
int dcmi_mcu_get_power_info(int card, int *power) {
    for (int i = 0; i < COUNT(MCU); i++) if (MCU[i][0] == card) { *power = MCU[i][1]; return 0; }
    return -8255;
}
%(topo)s
"""

_TOPO = r"""
int dcmi_get_topo_info_by_device_id(int c1, int d1, int c2, int d2, int *kind) {
    *kind = 2;
    for (int i = 0; i < COUNT(LINKS); i++) {
        const link_t *l = &LINKS[i];
        if ((l->c1 == c1 && l->d1 == d1 && l->c2 == c2 && l->d2 == d2) ||
            (l->c1 == c2 && l->d1 == d2 && l->c2 == c1 && l->d2 == d1)) *kind = l->kind;
    }
    return 0;
}
"""


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _c_chip(c: StubChip) -> str:
    die = list(c.die or (0, 0, 0, 0, 0))
    codes = [*c.codes, 0, 0, 0, 0][:4]
    hbm_total, hbm_used = c.hbm or (0, 0)
    ddr_total, ddr_avail = c.ddr or (0, 0)
    values = [
        c.card, c.dev, c.unit_type, c.logic, c.phy, _c_string(c.name),
        NOT_SUPPORT if c.power is None else 0, c.power or 0, c.temp, c.util,
        NOT_SUPPORT if c.hbm is None else 0, hbm_total, hbm_used,
        NOT_SUPPORT if c.ddr is None else 0, ddr_total, ddr_avail,
        *c.bus, NOT_SUPPORT if c.die is None else 0, "{" + ",".join(map(str, die)) + "}",
        DEVICE_NOT_EXIST if c.health is None else 0, c.health or 0,
        len(c.codes), "{" + ",".join(f"{x}u" for x in codes) + "}", _c_string(c.text),
    ]  # fmt: skip
    return "{" + ", ".join(map(str, values)) + "}"


def stub_library(tmp_path: Path, node: StubNode) -> str:
    links = node.links or {}
    source = _C_TEMPLATE % {
        "chips": ", ".join(_c_chip(c) for c in node.chips),
        "cards": ", ".join(map(str, node.cards())),
        "mcu": ", ".join(f"{{{card}, {power}}}" for card, power in node.mcu_power.items()) or "{-1, 0}",
        "links": ", ".join("{" + ", ".join(map(str, (*ends, kind))) + "}" for ends, kind in links.items())
        or "{-1,-1,-1,-1,0}",
        "init_rc": node.init_rc,
        "topo": "" if node.links is None else _TOPO,
    }
    return str(build_stub_library(tmp_path, "libdcmi.so", source))


def read_library(tmp_path: Path, node: StubNode) -> NodeSnapshot:
    reader = ascend.LibraryReader(stub_library(tmp_path, node))
    try:
        return reader.read()
    finally:
        reader.close()


# The devices of the recorded 910B2C table (npu-smi 25.5.2), with the health answers the CLI test
# gives them: NPU 1 has an uncorrectable HBM error, NPU 15 a RoCE link down.
NODE_910B2C = StubNode(
    chips=[
        StubChip(0, 0, logic=0, phy=0, power=939, temp=41, hbm=(65536, 3410), bus=(0, 0x66, 0, 0),
                 die=VDIE_NPU0),
        StubChip(1, 0, logic=1, phy=1, power=960, temp=43, hbm=(65536, 3404), bus=(0, 0x19, 0, 0),
                 health=3, codes=[0x80E01801], text=UCE_TEXT),
        StubChip(15, 0, logic=2, phy=15, power=960, temp=41, hbm=(65536, 3401), bus=(0, 0xD0, 0, 0),
                 health=1, codes=[0x81078603], text=LINK_TEXT),
    ],
    links={(0, 0, 1, 0): HCCS},
)  # fmt: skip

NODE_310P_DUO = StubNode(
    chips=[
        StubChip(
            1, 0, logic=0, phy=0, name="310P3", power=None, temp=49, hbm=None, ddr=(44278, 44278 - 1448)
        ),
        StubChip(
            1, 1, logic=1, phy=1, name="310P3", power=None, temp=45, hbm=None, ddr=(43693, 43693 - 1511)
        ),
        StubChip(1, 2, logic=-1, unit_type=1, name="mcu"),
    ],
    mcu_power={1: 632},
)


def without_ids(snapshot: NodeSnapshot) -> list[object]:
    return [replace(d, ids={}) for d in snapshot.devices]


def shared_ids_agree(a: NodeSnapshot, b: NodeSnapshot) -> bool:
    return all(
        x.ids[k] == y.ids[k]
        for x, y in zip(a.devices, b.devices, strict=True)
        for k in set(x.ids) & set(y.ids)
    )


def test_library_and_cli_agree_on_the_910b2c_node(tmp_path: Path, tool_path: Path) -> None:
    library = read_library(tmp_path, NODE_910B2C)
    install_fake_tool(
        tool_path,
        "npu-smi",
        {
            "info": fixture("ascend", "npu-smi-25.5.2-910b2c.txt"),
            "info -m": fixture("ascend", "npu-smi-info-m-910b2c.txt"),
            "info -t health -i 0 -c 0": fixture("ascend", "health-ok.txt"),
            "info -t health -i 1 -c 0": fixture("ascend", "health-critical-80e01801.txt"),
            "info -t health -i 15 -c 0": fixture("ascend", "health-warning-81078603.txt"),
            "info -t board -i 0 -c 0": fixture("ascend", "board-910b2c-npu0.txt"),
        },
    )
    cli = ascend.CliReader(timeout_s=10).read()
    assert without_ids(library) == without_ids(cli)
    assert shared_ids_agree(library, cli) and library.devices[2].ids["phy_id"] == "15"
    assert library.islands == cli.islands == ((0, 1),)
    assert library.source == "libdcmi" and library.interconnect == "hccs"
    # The facts themselves, not just agreement:
    uce = library.devices[1]
    assert not uce.healthy and uce.faults[0].code == 0x80E01801 and uce.faults[0].text == UCE_TEXT
    assert library.devices[0].power_w == 93.9 and library.devices[0].memory_used_bytes == 3410 * MIB
    assert library.devices[0].uuid == "2A9C1A04-20B03816-8D100228-14014010-40040505"
    assert library.devices[2].bus_id == "0000:D0:00.0"


def test_library_and_cli_agree_on_the_310p_duo(tmp_path: Path, tool_path: Path) -> None:
    library = read_library(tmp_path, NODE_310P_DUO)
    install_fake_tool(
        tool_path,
        "npu-smi",
        {
            "info": fixture("ascend", "npu-smi-25.5.1-310p3-duo.txt"),
            "info -m": fixture("ascend", "npu-smi-info-m-310p3-duo.txt"),
            "info -t power -i 1 -c 2": fixture("ascend", "power-mcu-310p3-duo.txt"),
            "info -t health -i 1 -c 0": fixture("ascend", "health-ok.txt"),
            "info -t health -i 1 -c 1": fixture("ascend", "health-ok.txt"),
        },
    )
    cli = ascend.CliReader(timeout_s=10).read()
    assert library.devices == cli.devices  # ids included: phy ids from DCMI and the Device column
    assert [d.power_w for d in library.devices] == [63.2, None]  # the MCU's 632 x 0.1 W, once
    assert [d.memory_used_bytes for d in library.devices] == [1448 * MIB, 1511 * MIB]  # DDR
    assert library.islands == ()


def test_a3_dies_pair_and_share_hccs(tmp_path: Path) -> None:
    chips = [
        StubChip(npu, die, logic=2 * npu + die, phy=2 * npu + die, name="Ascend910", power=1814)
        for npu in (0, 1)
        for die in (0, 1)
    ]
    links = {(0, 0, 0, 1): SIO, (1, 0, 1, 1): SIO, (0, 0, 1, 0): HCCS, (0, 1, 1, 1): HCCS}
    snap = read_library(tmp_path, StubNode(chips, links=links))
    assert [d.model for d in snap.devices] == ["Ascend 910C"] * 4
    assert [d.board_id for d in snap.devices] == ["npu0", "npu0", "npu1", "npu1"]
    assert [d.power_w for d in snap.devices] == [181.4, None, 181.4, None]  # the module's, once
    assert snap.islands == ((0, 1, 2, 3),)


def test_without_a_topology_call_the_documented_islands_apply(tmp_path: Path) -> None:
    chips = [StubChip(n, 0, logic=n, phy=n, name="910B4", hbm=(32768, 2849)) for n in range(8)]
    snap = read_library(tmp_path, StubNode(chips, links=None))
    assert snap.islands == ((0, 1, 2, 3, 4, 5, 6, 7),)
    assert {d.memory_total_bytes for d in snap.devices} == {32768 * MIB}


def test_health_without_codes_reads_ok_as_npu_smi_shows_it(tmp_path: Path) -> None:
    chips = [StubChip(0, 0, logic=0, health=2), StubChip(1, 0, logic=1, health=4)]
    alarm_without_codes, unknown = read_library(tmp_path, StubNode(chips)).devices
    assert alarm_without_codes.healthy and alarm_without_codes.faults == ()
    assert not unknown.healthy


def test_a_chip_gone_from_the_bus_is_lost(tmp_path: Path) -> None:
    snap = read_library(tmp_path, StubNode([StubChip(0, 0, logic=0, health=None)]))
    assert snap.devices[0].lost and not snap.devices[0].healthy


def test_missing_library_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LibraryUnavailable):
        ascend.LibraryReader(str(tmp_path / "nowhere" / "libdcmi.so"))


def test_failed_init_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LibraryUnavailable, match="dcmi_init"):
        ascend.LibraryReader(stub_library(tmp_path, StubNode([StubChip(0, 0, logic=0)], init_rc=-8005)))


def test_power_limit_is_refused_and_closed_reader_fails_cleanly(tmp_path: Path) -> None:
    reader = ascend.LibraryReader(stub_library(tmp_path, StubNode([StubChip(0, 0, logic=0)])))
    assert reader.read().devices[0].power_limit_settable is False
    with pytest.raises(PowerLimitError, match="no per-chip power cap"):
        reader.set_power_limit(0, 300.0)
    reader.close()
    with pytest.raises(SnapshotError, match="closed"):
        reader.read()
