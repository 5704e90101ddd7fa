package pipeline

import "os"

var selfPID = os.Getpid()
