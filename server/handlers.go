package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/queue"
	"github.com/hotkernel/hotkernel/repository"
)

type errorBody struct {
	Error  string         `json:"error"`
	Code   string         `json:"code"`
	Detail []invalidPlace `json:"detail,omitempty"`
}

// invalidPlace is one validator finding.
type invalidPlace struct {
	File   string `json:"file,omitempty"`
	Format string `json:"format,omitempty"`
	Line   int    `json:"line,omitempty"`
	Offset *int64 `json:"offset,omitempty"`
	Reason string `json:"reason"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

// classify maps an error to a status and a code.
func classify(err error) (int, string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, hotkernel.ErrNotRegistered), errors.Is(err, repository.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, hotkernel.ErrReloadInProgress):
		return http.StatusConflict, "reload_in_progress"
	case errors.Is(err, hotkernel.ErrDisabled):
		return http.StatusConflict, "reload_disabled"
	case errors.Is(err, hotkernel.ErrNoFallback):
		return http.StatusConflict, "no_fallback"
	case errors.Is(err, hotkernel.ErrInvalidCode), errors.Is(err, repository.ErrInvalidArtifact):
		return http.StatusUnprocessableEntity, "invalid_code"
	case errors.Is(err, repository.ErrInvalidVersion), errors.Is(err, repository.ErrInvalidID):
		return http.StatusBadRequest, "bad_request"
	case errors.Is(err, ErrNoOutputs):
		return http.StatusConflict, "no_outputs"
	case errors.Is(err, queue.ErrFull):
		return http.StatusServiceUnavailable, "queue_full"
	case errors.Is(err, hotkernel.ErrClosed):
		return http.StatusServiceUnavailable, "closed"
	}
	return http.StatusInternalServerError, "internal"
}

// fail writes err as a JSON error with its status, and the validator's
// findings for invalid code.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, c := classify(err)
	if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, errorBody{Error: err.Error(), Code: c, Detail: places(err)})
}

// places extracts the validator's *code.Error findings from err.
func places(err error) []invalidPlace {
	var out []invalidPlace
	var walk func(error)
	walk = func(e error) {
		if e == nil || len(out) >= 32 {
			return
		}
		if ce, ok := e.(*code.Error); ok {
			p := invalidPlace{File: ce.File, Format: ce.Format.String(), Line: ce.Line, Reason: ce.Reason}
			if ce.HasOffset {
				off := ce.Offset
				p.Offset = &off
			}
			out = append(out, p)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// kernelID checks the {id} path value.
func (s *Server) kernelID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := hotkernel.CheckID(id); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return "", false
	}
	return id, true
}

// decodeJSON decodes one JSON object of at most limit bytes into v,
// rejecting unknown fields and trailing data. An empty body leaves v alone
// when allowEmpty.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, allowEmpty bool) bool {
	body := http.MaxBytesReader(w, r.Body, limit)
	data, err := io.ReadAll(body)
	if err != nil {
		status, c := classify(err)
		if status == http.StatusInternalServerError {
			status, c = http.StatusBadRequest, "bad_request"
		}
		writeError(w, status, c, "reading the body: "+err.Error())
		return false
	}
	if allowEmpty && len(bytes.TrimSpace(data)) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_json", err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad_json", "trailing data after the JSON object")
		return false
	}
	return true
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.stopping.Load() {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "shutting down")
		return
	}
	for _, id := range s.mgr.List() {
		k, err := s.mgr.Kernel(id)
		if err != nil || k.Status() == "stopped" {
			writeError(w, http.StatusServiceUnavailable, "not_ready", fmt.Sprintf("kernel %s is stopped", id))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// KernelInfo is one kernel as GET /v1/kernels and GET /v1/kernels/{id}
// describe it (History only in the latter); clients decode into it.
type KernelInfo struct {
	ID          string        `json:"id"`
	Version     uint64        `json:"version"`
	Format      string        `json:"format"`
	SHA256      string        `json:"sha256"`
	State       string        `json:"state"`
	QueueDepth  int           `json:"queue_depth"`
	Processed   uint64        `json:"processed"`
	DeadLetters uint64        `json:"dead_letters"`
	History     []VersionInfo `json:"history,omitempty"`
}

// VersionInfo is one remembered version of a kernel in KernelInfo.
type VersionInfo struct {
	Version           uint64 `json:"version"`
	SHA256            string `json:"sha256"`
	Format            string `json:"format"`
	RepositoryVersion string `json:"repository_version,omitempty"`
	Processed         uint64 `json:"processed"`
	Checkpoint        bool   `json:"checkpoint"`
}

func describe(k *hotkernel.Kernel, history bool) KernelInfo {
	src := k.Code()
	proc := k.Processed()
	_, dead := k.DeadLetters()
	kj := KernelInfo{
		ID: k.ID(), Version: src.Version(), Format: src.Format().String(), SHA256: src.SHA256Hex(),
		State: k.Status(), QueueDepth: k.QueueLen(), DeadLetters: dead,
	}
	for _, n := range proc {
		kj.Processed += n
	}
	if history {
		cps := make(map[uint64]bool)
		for _, cp := range k.Checkpoints() {
			cps[cp.CodeVersion] = true
		}
		kj.History = []VersionInfo{}
		for _, h := range k.History() {
			rv, _ := h.MetadataValue("repository.version")
			kj.History = append(kj.History, VersionInfo{
				Version: h.Version(), SHA256: h.SHA256Hex(), Format: h.Format().String(),
				RepositoryVersion: rv, Processed: proc[h.Version()], Checkpoint: cps[h.Version()],
			})
		}
	}
	return kj
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	out := []KernelInfo{}
	for _, id := range s.mgr.List() {
		if k, err := s.mgr.Kernel(id); err == nil {
			out = append(out, describe(k, false))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"kernels": out})
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	id, ok := s.kernelID(w, r)
	if !ok {
		return
	}
	k, err := s.mgr.Kernel(id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, describe(k, true))
}

type outputJSON struct {
	Version uint64 `json:"version"`
	Data    []byte `json:"data"`
}

type sendReply struct {
	FirstSeq uint64       `json:"first_seq"`
	Outputs  []outputJSON `json:"outputs"`
	Dropped  int          `json:"dropped,omitempty"`
}

func reply(first uint64, outs []Output, dropped int) sendReply {
	sr := sendReply{FirstSeq: first, Outputs: make([]outputJSON, len(outs)), Dropped: dropped}
	for i, o := range outs {
		sr.Outputs[i] = outputJSON{Version: o.Version, Data: o.Data}
	}
	return sr
}

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
	id, ok := s.kernelID(w, r)
	if !ok {
		return
	}
	var req struct {
		Messages [][]byte `json:"messages"`
	}
	if !decodeJSON(w, r, s.cfg.MaxBodyBytes, &req, false) {
		return
	}
	if len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "no messages")
		return
	}
	first, outs, dropped, err := s.Send(r.Context(), id, req.Messages)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, reply(first, outs, dropped))
}

func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	id, ok := s.kernelID(w, r)
	if !ok {
		return
	}
	if _, err := s.mgr.Kernel(id); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.sinkFor(id, false) == nil {
		s.fail(w, r, fmt.Errorf("kernel %s: %w", id, ErrNoOutputs))
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	line := func(v any) bool {
		if enc.Encode(v) != nil {
			return false
		}
		return rc.Flush() == nil
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 0, 64<<10), s.cfg.MaxLineBytes)
	for sc.Scan() {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var in struct {
			Data []byte `json:"data"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil || dec.More() {
			msg := "line is not one JSON object {\"data\": base64}"
			if err != nil {
				msg = err.Error()
			}
			line(errorBody{Error: msg, Code: "bad_json"})
			return
		}
		first, outs, dropped, err := s.Send(r.Context(), id, [][]byte{in.Data})
		if err != nil {
			_, c := classify(err)
			line(errorBody{Error: err.Error(), Code: c})
			return
		}
		if !line(reply(first, outs, dropped)) {
			return
		}
	}
	if err := sc.Err(); err != nil {
		c := "bad_request"
		if errors.Is(err, bufio.ErrTooLong) {
			c = "too_large"
		}
		line(errorBody{Error: "reading the stream: " + err.Error(), Code: c})
	}
}

// durationJSON is a duration in nanoseconds and as text.
type durationJSON struct {
	NS   int64  `json:"ns"`
	Text string `json:"text"`
}

func dur(d time.Duration) durationJSON { return durationJSON{NS: int64(d), Text: d.String()} }

type resultJSON struct {
	Kernel          string                  `json:"kernel"`
	OldVersion      uint64                  `json:"old_version"`
	NewVersion      uint64                  `json:"new_version"`
	Active          uint64                  `json:"active"`
	Attempts        int                     `json:"attempts"`
	Phases          map[string]durationJSON `json:"phases"`
	Pause           durationJSON            `json:"pause"`
	HealthMessages  int                     `json:"health_messages"`
	Cutoff          uint64                  `json:"cutoff"`
	CheckpointBytes int                     `json:"checkpoint_bytes"`
	StatePreserved  bool                    `json:"state_preserved"`
	Migrated        bool                    `json:"migrated"`
	RolledBack      bool                    `json:"rolled_back"`
	Error           string                  `json:"error,omitempty"`
	Code            string                  `json:"code,omitempty"`
}

func resultBody(res *hotkernel.Result, err error) resultJSON {
	rj := resultJSON{
		Kernel: res.Kernel, OldVersion: res.OldVersion, NewVersion: res.NewVersion, Active: res.Active,
		Attempts: res.Attempts, Pause: dur(res.Pause), HealthMessages: res.HealthMessages, Cutoff: res.Cutoff,
		CheckpointBytes: res.CheckpointBytes, StatePreserved: res.StatePreserved, Migrated: res.Migrated,
		RolledBack: res.RolledBack,
		Phases: map[string]durationJSON{
			"validate": dur(res.Validate), "compile": dur(res.Compile), "drain": dur(res.Drain),
			"checkpoint": dur(res.Checkpoint), "swap": dur(res.Swap), "restore": dur(res.Restore),
			"health": dur(res.Health), "total": dur(res.Total),
		},
	}
	if err != nil {
		rj.Error = err.Error()
		_, rj.Code = classify(err)
	}
	return rj
}

// writeResult answers a reload or rollback.
func (s *Server) writeResult(w http.ResponseWriter, r *http.Request, res *hotkernel.Result, err error) {
	if res == nil {
		if err == nil {
			err = errors.New("reload returned no result")
		}
		s.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if err != nil {
		status, _ = classify(err)
		if status < 500 && status != http.StatusConflict && status != http.StatusUnprocessableEntity {
			status = http.StatusInternalServerError
		}
		s.log.Warn("reload failed", "kernel", res.Kernel, "err", err)
	}
	writeJSON(w, status, resultBody(res, err))
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	id, ok := s.kernelID(w, r)
	if !ok {
		return
	}
	if _, err := s.mgr.Kernel(id); err != nil {
		s.fail(w, r, err)
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var src *code.Source
	switch ct {
	case "application/json":
		var req struct {
			Version json.Number `json:"version"`
		}
		if !decodeJSON(w, r, s.cfg.MaxJSONBytes, &req, false) {
			return
		}
		ver, err := repository.ParseVersion(req.Version.String())
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_version", err.Error())
			return
		}
		if s.repo == nil {
			writeError(w, http.StatusBadRequest, "no_repository", "the server has no repository to load versions from")
			return
		}
		src, _, err = s.repo.Load(r.Context(), id, ver)
		if err != nil {
			s.fail(w, r, err)
			return
		}
	case "application/wasm", "application/octet-stream":
		q := r.URL.Query()
		fname := q.Get("format")
		if fname == "" && ct == "application/wasm" {
			fname = "wasm"
		}
		if fname == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "the format query parameter is required for application/octet-stream")
			return
		}
		f, err := code.ParseFormat(fname)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		entry := q.Get("entry")
		if entry == "" {
			if f != code.FormatWASM {
				writeError(w, http.StatusBadRequest, "bad_request", "the entry query parameter is required for this format")
				return
			}
			entry = repository.WasmEntry
		}
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
		if err != nil {
			status, c := classify(err)
			if status == http.StatusInternalServerError {
				status, c = http.StatusBadRequest, "bad_request"
			}
			writeError(w, status, c, "reading the body: "+err.Error())
			return
		}
		src = code.New(f, data, entry).WithMetadata("name", "upload."+f.String())
		if _, err := code.Validate(src, code.Options{}); err != nil {
			s.fail(w, r, fmt.Errorf("%w: %w", hotkernel.ErrInvalidCode, err))
			return
		}
	default:
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
			"use application/json with {\"version\": N}, or application/wasm or application/octet-stream with the artifact")
		return
	}
	if acceptsNDJSON(r) {
		s.streamReload(w, r, id, src)
		return
	}
	res, err := s.Reload(r.Context(), id, src)
	s.writeResult(w, r, res, err)
}

// acceptsNDJSON reports whether the request asks for a streamed reply.
func acceptsNDJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/x-ndjson" {
			return true
		}
	}
	return false
}

// phaseLine is one line of a streamed reload: a phase that ended.
type phaseLine struct {
	Phase string       `json:"phase"`
	Took  durationJSON `json:"took"`
}

// resultLine is the last line of a streamed reload.
type resultLine struct {
	Result *resultJSON `json:"result,omitempty"`
	Error  string      `json:"error,omitempty"`
	Code   string      `json:"code,omitempty"`
}

// streamReload runs the reload of kernel id to src and answers with
// NDJSON: one phaseLine per phase as it ends, then one resultLine.
func (s *Server) streamReload(w http.ResponseWriter, r *http.Request, id string, src *code.Source) {
	// At most this many phase lines wait for the writer; the reload never
	// waits for the client, and lines beyond the buffer are dropped (a
	// reload has about ten phases per attempt).
	phases := make(chan phaseLine, 256)
	var (
		res *hotkernel.Result
		err error
	)
	go func() {
		defer close(phases)
		res, err = s.ReloadWithPhases(r.Context(), id, src, func(p hotkernel.State, took time.Duration) {
			select {
			case phases <- phaseLine{Phase: p.String(), Took: dur(took)}:
			default:
			}
		})
	}()
	first, open := <-phases
	if !open && res == nil {
		// The reload could not start: an ordinary error status.
		s.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	line := func(v any) {
		if enc.Encode(v) == nil {
			_ = rc.Flush()
		}
	}
	if open {
		line(first)
		for p := range phases {
			line(p)
		}
	}
	if res == nil {
		if err == nil {
			err = errors.New("reload returned no result")
		}
		_, c := classify(err)
		line(resultLine{Error: err.Error(), Code: c})
		return
	}
	if err != nil {
		s.log.Warn("reload failed", "kernel", res.Kernel, "err", err)
	}
	rj := resultBody(res, err)
	line(resultLine{Result: &rj})
}

func (s *Server) handleRollback(w http.ResponseWriter, r *http.Request) {
	id, ok := s.kernelID(w, r)
	if !ok {
		return
	}
	var req struct {
		To *json.Number `json:"to"`
	}
	if !decodeJSON(w, r, s.cfg.MaxJSONBytes, &req, true) {
		return
	}
	var to uint64
	if req.To != nil {
		v, err := repository.ParseVersion(req.To.String())
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_version", err.Error())
			return
		}
		to = v
	}
	if _, err := s.mgr.Kernel(id); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.Rollback(r.Context(), id, to)
	s.writeResult(w, r, res, err)
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	st := s.mgr.Stats()
	proc := make(map[string]map[string]uint64, len(st.Processed))
	for k, m := range st.Processed {
		pm := make(map[string]uint64, len(m))
		for v, n := range m {
			pm[strconv.FormatUint(v, 10)] = n
		}
		proc[k] = pm
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"successful": st.Successful, "failed": st.Failed, "rollbacks": st.Rollbacks, "retries": st.Retries,
		"state_preserved": st.StatePreserved,
		"avg_drain":       dur(st.AvgDrain), "avg_compile": dur(st.AvgCompile), "avg_swap": dur(st.AvgSwap),
		"avg_pause": dur(st.AvgPause), "max_pause": dur(st.MaxPause),
		"restarts": st.Restarts, "failed_messages": st.FailedMessages,
		"processed": proc,
	})
}
