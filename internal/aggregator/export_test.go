package aggregator

// SetHook installs a test hook called at named points of command handling
// ("decide", "appended").
func SetHook(s *Service, hook func(point, commandID string)) { s.handler.hook = hook }
