package privtest

import (
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

// ModbusRegisters is the size of the helper server's register and coil
// tables: an address at or past it is answered with the exception
// illegal data address.
const ModbusRegisters = 100

// modbusTables is the helper server's data: registers and coils.
type modbusTables struct {
	mu    sync.Mutex
	regs  [ModbusRegisters]uint16
	coils [ModbusRegisters]bool
}

func (m *modbusTables) HandleCoils(req *modbus.CoilsRequest) ([]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if int(req.Addr)+int(req.Quantity) > ModbusRegisters {
		return nil, modbus.ErrIllegalDataAddress
	}
	if req.IsWrite {
		copy(m.coils[req.Addr:], req.Args)
		return nil, nil
	}
	return append([]bool(nil), m.coils[req.Addr:req.Addr+req.Quantity]...), nil
}

func (m *modbusTables) HandleDiscreteInputs(*modbus.DiscreteInputsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}

func (m *modbusTables) HandleHoldingRegisters(req *modbus.HoldingRegistersRequest) ([]uint16, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if int(req.Addr)+int(req.Quantity) > ModbusRegisters {
		return nil, modbus.ErrIllegalDataAddress
	}
	if req.IsWrite {
		copy(m.regs[req.Addr:], req.Args)
		return nil, nil
	}
	return append([]uint16(nil), m.regs[req.Addr:req.Addr+req.Quantity]...), nil
}

func (m *modbusTables) HandleInputRegisters(*modbus.InputRegistersRequest) ([]uint16, error) {
	return nil, modbus.ErrIllegalFunction
}

// modbusServer serves Modbus/TCP (github.com/simonvetter/modbus) on a free
// port of $WATCHPOST_TEST_ADDR's host, prints the port and serves until
// killed.
func modbusServer(host string) int {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 150
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // the library listens itself, on a URL
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{
		URL:        "tcp://" + net.JoinHostPort(host, strconv.Itoa(port)),
		Timeout:    10 * time.Minute,
		MaxClients: 16,
		Logger:     log.New(io.Discard, "", 0),
	}, &modbusTables{})
	if err != nil {
		return 151
	}
	if err := srv.Start(); err != nil {
		return 152
	}
	fmt.Println(port)
	for {
		time.Sleep(time.Hour)
	}
}

// ModbusServer starts the executable exe (a copy of the test binary, so
// the server is another process with its own executable) as a Modbus/TCP
// server on host and returns it and its port; it is killed when the test
// ends.
func ModbusServer(t testing.TB, exe, host string) (*exec.Cmd, int) {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), HelperEnv+"=modbus-server", "WATCHPOST_TEST_ADDR="+host)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var port int
	if _, err := fmt.Fscanln(out, &port); err != nil || port == 0 {
		t.Fatalf("modbus server helper: port %d: %v", port, err)
	}
	return cmd, port
}
