/** <module> Sandboxed request loop of a provex Prolog worker

A worker reads one JSON request per line from the file descriptor named by
its first argument and writes one JSON reply per line to the descriptor
named by its second argument.  The third argument is the Prolog stack limit
in bytes.  Standard input and output are left to the
operating system (the pool connects them to /dev/null), so programs that
read or write them can never reach the protocol streams.

Requests:

    {"id": 7, "op": "run", "program": "...", "query": "solve(X)",
     "time": 1.0, "inferences": 10000000}
    {"id": 8, "op": "analyze", "program": "..."}

Every program is loaded into a fresh temporary module with
load_files/2 option sandboxed(true), and the query is checked with
safe_goal/1 before it runs under call_with_time_limit/2 and
call_with_inference_limit/3.
*/

:- use_module(library(sandbox)).
:- use_module(library(time)).
:- use_module(library(http/json)).
:- use_module(library(modules)).
:- use_module(library(readutil)).
:- use_module(library(prolog_wrap)).
% Preloaded so that use_module/1 directives in programs cost nothing.  A
% library that is first loaded by a program is loaded under the sandbox, and
% some (clpr among them) fail to load that way.
:- use_module(library(clpq), []).
:- use_module(library(clpr), []).
:- use_module(library(clpfd), []).
:- use_module(library(clpb), []).
:- use_module(library(lists), []).
:- use_module(library(apply), []).
:- use_module(library(aggregate), []).
:- use_module(library(yall), []).
:- use_module(library(pairs), []).
:- use_module(library(assoc), []).
:- use_module(library(ordsets), []).
:- use_module(library(ugraphs), []).
:- use_module(library(solution_sequences), []).
:- use_module(library(strings), []).
:- use_module(library(occurs), []).
:- use_module(library(random), []).
:- use_module(library(rbtrees), []).
:- use_module(library(dicts), []).
:- use_module(library(dcg/basics), []).
:- use_module(library(dcg/high_order), []).

% Output goes to a string through with_output_to/2, so plain writes are safe.
:- multifile sandbox:safe_primitive/1.
sandbox:safe_primitive(system:write(_)).
sandbox:safe_primitive(system:print(_)).
sandbox:safe_primitive(system:writeq(_)).
sandbox:safe_primitive(system:write_canonical(_)).
sandbox:safe_primitive(system:write_term(_, _)).
sandbox:safe_primitive(system:nl).
sandbox:safe_primitive(system:tab(_)).
sandbox:safe_primitive(system:put_char(_)).

%!  no_prolog_flags is det.
%
%   Make every set_prolog_flag/2 unsafe.  The stock sandbox accepts a few
%   flags (occurs_check, prefer_rationals, float modes) that are global to
%   the worker thread and would leak into the next program.
no_prolog_flags :-
    wrap_predicate(sandbox:safe_prolog_flag(_, _), provex_no_flags, _, fail).

:- dynamic collecting/0, collected/3.
:- multifile user:message_hook/3.
user:message_hook(Term, Kind, _Lines) :-
    collecting,
    ( Kind == error ; Kind == warning ),
    !,
    message_text(Term, Text),
    assertz(collected(Kind, Term, Text)).

message_text(Term, Text) :-
    catch(message_text_(Term, Text), _, format(string(Text), "~q", [Term])).
message_text_(Term, Text) :-
    '$messages':translate_message(Term, Lines, []), !,
    with_output_to(string(Text0), print_message_lines(current_output, '', Lines)),
    split_string(Text0, "", "\n ", [Text]).
message_text_(Term, Text) :-
    format(string(Text), "~q", [Term]).

max_text(1000000).

%!  main is det.
%
%   Serve requests until the request stream ends.
main :-
    current_prolog_flag(argv, Argv),
    (   Argv = [InFd, OutFd, StackLimit|_]
    ->  true
    ;   format(user_error, "usage: runner IN_FD OUT_FD STACK_LIMIT_BYTES~n", []),
        halt(2)
    ),
    % Set here because a saved state ignores --stack-limit on the command line.
    atom_number(StackLimit, StackBytes),
    set_prolog_flag(stack_limit, StackBytes),
    % A saved state starts with autoloading off; programs rely on it for
    % library predicates such as sum_list/2 and nth1/3.
    set_prolog_flag(autoload, true),
    atom_concat('/dev/fd/', InFd, InPath),
    atom_concat('/dev/fd/', OutFd, OutPath),
    open(InPath, read, In, [encoding(utf8)]),
    open(OutPath, write, Out, [encoding(utf8), buffer(full)]),
    no_prolog_flags,
    serve(In, Out).

serve(In, Out) :-
    read_line_to_string(In, Line),
    (   Line == end_of_file
    ->  halt(0)
    ;   nb_setval(provex_request_id, null),
        (   catch(handle(Line, Reply0), E, internal_error(E, Reply0))
        ->  true
        ;   Reply0 = _{status:"error", error:"the runner failed on this request"}
        ),
        nb_getval(provex_request_id, Id),
        put_dict(id, Reply0, Id, Reply),
        json_write_dict(Out, Reply, [width(0)]),
        nl(Out),
        flush_output(Out),
        serve(In, Out)
    ).

internal_error(E, _{status:"error", error:Text}) :-
    message_text(E, Text).

% The request id is kept in a global variable so that the reply carries it
% even when handling the request raised an exception or failed.
handle(Line, Reply) :-
    atom_json_dict(Line, Request, [value_string_as(string)]),
    (   get_dict(id, Request, Id) -> nb_setval(provex_request_id, Id) ; true ),
    (   get_dict(op, Request, Op) -> true ; Op = "run" ),
    handle(Op, Request, Reply).

handle("run", Request, Reply) :-
    !,
    Program = Request.program,
    (   get_dict(query, Request, Query) -> true ; Query = "solve(X)" ),
    (   get_dict(time, Request, Time) -> true ; Time = 1.0 ),
    (   get_dict(inferences, Request, Inferences) -> true ; Inferences = 10000000 ),
    Limits = limits(Time, Inferences),
    in_temporary_module(M, true, run(M, Program, Query, Limits, Reply)).
handle("analyze", Request, Reply) :-
    !,
    in_temporary_module(M, true, analyze(M, Request.program, Reply)).
handle("ping", _, _{status:"ok"}) :- !.
handle(Op, _, _{status:"error", error:Text}) :-
    format(string(Text), "unknown op ~q", [Op]).

%!  run(+Module, +Program, +QueryText, +Limits, -Reply) is det.
%
%   The program is loaded as a source file named after the temporary module
%   and unloaded afterwards.  A fixed name would make SWI-Prolog re-run the
%   initialization/1 goals of earlier programs when the name is reloaded.
run(M, Program, QueryText, Limits, Reply) :-
    setup_call_cleanup(
        true,
        run_loaded(M, Program, QueryText, Limits, Reply),
        catch(unload_file(M), _, true)).

run_loaded(M, Program, QueryText, Limits, Reply) :-
    aggregate_all(count, current_module(_), Modules0),
    load_program(M, Program, Limits, LoadOutput, LoadError),
    aggregate_all(count, current_module(_), Modules1),
    findall(K-T-S, collected(K, T, S), Collected),
    retractall(collected(_, _, _)),
    messages_json(Collected, Messages),
    (   load_status(LoadError, Collected, Status, Error)
    ->  true
    ;   Status = "ok"
    ),
    (   Status == "ok"
    ->  query(M, QueryText, Limits, Reply0),
        put_dict(messages, Reply0, Messages, Reply1)
    ;   query_after_load_error(Status)
    ->  query(M, QueryText, Limits, Reply0),
        put_dict(_{status:Status, error:Error, messages:Messages,
                   query_status:Reply0.status},
                 Reply0, Reply1)
    ;   Reply1 = _{status:Status, error:Error, messages:Messages}
    ),
    prepend_output(LoadOutput, Reply1, Reply2),
    (   recycle(LoadError, Collected, Modules0, Modules1)
    ->  put_dict(recycle, Reply2, true, Reply)
    ;   Reply = Reply2
    ).

%!  query_after_load_error(+Status) is semidet.
%
%   True for the load errors after which plain swipl still runs its goal:
%   SWI-Prolog prints a clause it cannot parse, or a directive that raised
%   an error or called an undefined predicate, and loads the rest of the
%   file.  The query's own outcome is then kept in query_status.  After a
%   sandbox violation or a limit the query is not run.
query_after_load_error("syntax_error").
query_after_load_error("error").
query_after_load_error("undefined_predicate").

%!  prepend_output(+LoadOutput, +Reply0, -Reply) is det.
%
%   Put what directives and initialization/1 goals wrote while loading
%   before the query's output, in the order plain swipl prints them.
prepend_output("", Reply, Reply) :- !.
prepend_output(LoadOutput, Reply0, Reply) :-
    (   get_dict(output, Reply0, QueryOutput) -> true ; QueryOutput = "" ),
    string_concat(LoadOutput, QueryOutput, Output0),
    cap_text(Output0, Output),
    put_dict(output, Reply0, Output, Reply).

%!  recycle(?LoadError, +Collected, +Modules0, +Modules1) is semidet.
%
%   True when this worker must be replaced after the reply.  SWI-Prolog's
%   loader is left in a bad state when a limit interrupts it (later loads
%   fail at once).  A library that is not preloaded is loaded under the
%   program's sandbox and may stay behind half-loaded: that shows as new
%   modules together with error messages.
recycle(LoadError, _, _, _) :-
    limit_error(LoadError), !.
recycle(_, Collected, Modules0, Modules1) :-
    Modules1 > Modules0,
    memberchk(error-_-_, Collected).

limit_error(E) :- E == time_limit_exceeded, !.
limit_error(E) :- E == inference_limit_exceeded.

query(M, QueryText, Limits, Reply) :-
    catch(term_string(Q, QueryText, [module(M), variable_names(Names)]),
          QE, true),
    (   nonvar(QE)
    ->  message_text(QE, Error),
        Reply = _{status:"syntax_error", error:Error}
    ;   catch(safe_goal(M:Q), SE, true),
        (   nonvar(SE)
        ->  message_text(SE, Error),
            check_error_status(SE, Status),
            Reply = _{status:Status, error:Error}
        ;   execute(M, Q, Names, Limits, Reply)
        )
    ).

%!  load_program(+Module, +Program, +Limits, -Output, -Error) is det.
%
%   Load under the query's limits too, because directives and
%   initialization/1 goals run while loading.  Output is what they wrote
%   to standard output, capped like the query's output.
load_program(M, Program, limits(Time, Inferences), Output, Error) :-
    assertz(collecting),
    get_time(Start),
    statistics(inferences, Inferences0),
    with_output_to(
        string(Output0),
        catch(call_with_time_limit(
                  Time,
                  call_with_inference_limit(
                      setup_call_cleanup(
                          open_string(Program, S),
                          load_files(M:M, [stream(S), module(M), sandboxed(true),
                                           silent(true)]),
                          close(S)),
                      Inferences, Det)),
              Error, true)),
    cap_text(Output0, Output),
    get_time(End),
    statistics(inferences, Inferences1),
    retractall(collecting),
    (   nonvar(Error)
    ->  true
    % The loader prints exceptions of directives and initialization goals
    % instead of raising them, and a program may catch them itself.
    ;   (   End - Start > Time
        ;   collected(_, Term, _), sub_term(T, Term), T == time_limit_exceeded
        )
    ->  Error = time_limit_exceeded
    ;   (   Det == inference_limit_exceeded
        ;   Inferences1 - Inferences0 > Inferences
        ;   collected(_, Term, _), sub_term(T, Term), T == inference_limit_exceeded
        )
    ->  Error = inference_limit_exceeded
    ;   true
    ).

messages_json([], []).
messages_json([K-_-S|T], [Text|R]) :-
    format(string(Text), "~w: ~w", [K, S]),
    messages_json(T, R).

%!  load_status(?LoadError, +Collected, -Status, -Error) is semidet.
%
%   Status decided by loading: "unsafe" or "undefined_predicate" for a
%   directive or clause that the sandbox rejected, "syntax_error" for a
%   clause that did not parse, "error" for any other error message.  Fails
%   when the program loaded cleanly.
load_status(E, _, "timeout", "time limit exceeded while loading") :-
    E == time_limit_exceeded, !.
load_status(E, _, "inference_limit", "inference limit exceeded while loading") :-
    E == inference_limit_exceeded, !.
load_status(E, _, Status, Error) :-
    nonvar(E), !,
    message_text(E, Error),
    (   E = error(resource_error(_), _) -> Status = "resource_error"
    ;   sandbox_error_term(E) -> unsafe_status(E, Status)
    ;   syntax_error_term(E) -> Status = "syntax_error"
    ;   Status = "error"
    ).
load_status(_, Collected, Status, Error) :-
    member(_-T-Error, Collected),
    sandbox_error_term(T), !,
    unsafe_status(T, Status).
load_status(_, Collected, "syntax_error", Error) :-
    member(error-T-Error, Collected),
    syntax_error_term(T), !.
load_status(_, Collected, "error", Error) :-
    member(error-_-Error, Collected), !.

syntax_error_term(T) :-
    sub_term(S, T), nonvar(S), S = error(syntax_error(_), _), !.

%   The sandbox also reports ordinary type errors (e.g. an atom used as
%   an arithmetic function) with a sandbox(_, _) context.  Those are left
%   to the query, so that they end up as status "error".
sandbox_error_term(T) :-
    sub_term(S, T), nonvar(S),
    (   S = error(permission_error(_, Kind, _), _), sandbox_kind(Kind)
    ;   S = error(instantiation_error, sandbox(_, _))
    ;   S = error(existence_error(procedure, _), sandbox(_, _))
    ), !.

sandbox_kind(sandboxed).
sandbox_kind(sandboxed_directive).
sandbox_kind(sandboxed_clause).
sandbox_kind(initialization(_)).   % e.g. initialization(halt, main)

%!  check_error_status(+Error, -Status) is det.
%
%   Status for an exception of safe_goal/1.  It also raises ordinary errors
%   when it evaluates constant arithmetic, e.g. for X is foo + 1.
check_error_status(E, Status) :-
    sandbox_error_term(E), !,
    unsafe_status(E, Status).
check_error_status(_, "error").

%!  unsafe_status(+Error, -Status) is det.
%
%   Undefined predicates found by safe_goal/1 get their own status.
unsafe_status(E, "undefined_predicate") :-
    sub_term(S, E), nonvar(S), S = existence_error(procedure, _), !.
unsafe_status(_, "unsafe").

%!  execute(+Module, +Goal, +Names, +Limits, -Reply) is det.
execute(M, Q, Names, limits(Time, Inferences), Reply) :-
    get_time(Start),
    statistics(inferences, Inferences0),
    catch(call_with_time_limit(
              Time,
              call_with_inference_limit(
                  solve_and_encode(M, Q, Names, Output, Result),
                  Inferences, Det)),
          E, true),
    get_time(End),
    statistics(inferences, Inferences1),
    (   nonvar(E)
    ->  error_reply(E, Reply)
    ;   End - Start > Time
    % A goal that catches time_limit_exceeded and then succeeds still overran.
    ->  Reply = _{status:"timeout", error:"time limit exceeded (exception caught by the program)"}
    ;   (   Det == inference_limit_exceeded
        ;   Inferences1 - Inferences0 > Inferences
        )
    ->  Reply = _{status:"inference_limit", error:"inference limit exceeded"}
    ;   Result = failed
    ->  cap_text(Output, Out),
        Reply = _{status:"fail", output:Out}
    ;   Result = values(Bindings, Texts),
        cap_text(Output, Out),
        Reply = _{status:"ok", bindings:Bindings, texts:Texts, output:Out}
    ).

solve_and_encode(M, Q, Names, Output, Result) :-
    with_output_to(string(Output), (M:Q -> Found = true ; Found = false)),
    (   Found == true
    ->  encode_bindings(Names, Bindings, Texts),
        Result = values(Bindings, Texts)
    ;   Result = failed
    ).

error_reply(time_limit_exceeded, _{status:"timeout", error:"time limit exceeded"}) :- !.
error_reply(E, _{status:"resource_error", error:Text}) :-
    (   E = error(resource_error(_), _) ; E = resource_error(_) ), !,
    message_text(E, Text).
error_reply(E, _{status:"undefined_predicate", error:Text}) :-
    E = error(existence_error(procedure, _), _), !,
    message_text(E, Text).
error_reply(E, _{status:Status, error:Text}) :-
    sandbox_error_term(E), !,
    unsafe_status(E, Status),
    message_text(E, Text).
error_reply(E, _{status:"error", error:Text}) :-
    message_text(E, Text).

cap_text(Text, Capped) :-
    max_text(Max),
    string_length(Text, Len),
    (   Len =< Max -> Capped = Text ; sub_string(Text, 0, Max, _, Capped) ).

encode_bindings(Names, Bindings, Texts) :-
    foldl(encode_binding, Names, _{}-_{}, Bindings-Texts).

encode_binding(Name=Value, B0-T0, B-T) :-
    encode(Value, 0, Json),
    format(string(Text0), "~w", [Value]),
    cap_text(Text0, Text),
    put_dict(Name, B0, Json, B),
    put_dict(Name, T0, Text, T).

%!  encode(+Term, +Depth, -Json) is det.
%
%   Describe a term as a JSON object tagged by its type, so that Python can
%   rebuild it without parsing Prolog syntax.  Integers and rationals travel
%   as strings because they may exceed 64 bits.
encode(V, _, _{t:"var", v:S}) :- var(V), !, format(string(S), "~w", [V]).
encode(V, D, _{t:"other", v:S}) :- D > 1000, !, format(string(S), "~w", [V]).
encode(V, _, _{t:"int", v:S}) :- integer(V), !, number_string(V, S).
encode(V, _, _{t:"float", v:S}) :- float(V), !, format(string(S), "~w", [V]).
encode(V, _, _{t:"rat", n:N, d:Den}) :-
    rational(V, N0, D0), !, number_string(N0, N), number_string(D0, Den).
encode([], _, _{t:"list", v:[]}) :- !.
encode(V, _, _{t:"atom", v:V}) :- atom(V), !.
encode(V, _, _{t:"str", v:V}) :- string(V), !.
encode(V, _, _{t:"other", v:S}) :- cyclic_term(V), !, format(string(S), "~p", [V]).
encode(V, D, _{t:"list", v:Items}) :-
    is_list(V), !, D1 is D + 1,
    encode_all(V, D1, Items).
encode(V, D, _{t:"cmp", name:Name, v:Args}) :-
    compound(V), !, D1 is D + 1,
    compound_name_arguments(V, Name0, Args0),
    format(string(Name), "~w", [Name0]),
    encode_all(Args0, D1, Args).
encode(V, _, _{t:"other", v:S}) :- format(string(S), "~w", [V]).

encode_all([], _, []).
encode_all([X|Xs], D, [J|Js]) :- encode(X, D, J), encode_all(Xs, D, Js).

%!  analyze(+Module, +Program, -Reply) is det.
%
%   Count the clauses whose head is not solve/N (directives excluded) and the
%   {}/1 subterms of all terms, by reading the program without loading it.
analyze(M, Program, Reply) :-
    catch(setup_call_cleanup(
              ( open_string(Program, S), set_stream(S, file_name(program)) ),
              read_counts(S, M, 0, 0, P, C),
              close(S)),
          E, true),
    (   var(E)
    ->  Reply = _{status:"ok", predicates:P, constraints:C}
    ;   message_text(E, Text),
        (   syntax_error_term(E) -> Status = "syntax_error" ; Status = "error" ),
        Reply = _{status:Status, error:Text, predicates:0, constraints:0}
    ).

read_counts(S, M, P0, C0, P, C) :-
    read_term(S, T, [module(M), syntax_errors(error)]),
    (   T == end_of_file
    ->  P = P0, C = C0
    ;   clause_count(T, DP),
        curly_count(T, DC),
        P1 is P0 + DP,
        C1 is C0 + DC,
        read_counts(S, M, P1, C1, P, C)
    ).

clause_count(T, 0) :- var(T), !.
clause_count((:- _), 0) :- !.
clause_count((?- _), 0) :- !.
clause_count((H :- _), N) :- !, head_count(H, N).
clause_count((H --> _), N) :- !, head_count(H, N).
clause_count(H, N) :- head_count(H, N).

head_count(H, 0) :- var(H), !.
head_count(_:H, N) :- !, head_count(H, N).
head_count(H, 0) :- callable(H), functor(H, solve, _), !.
head_count(_, 1).

curly_count(T, N) :-
    (   compound(T)
    ->  compound_name_arguments(T, Name, Args),
        foldl([A, N0, N1]>>(curly_count(A, NA), N1 is N0 + NA), Args, 0, NArgs),
        (   Name == {}, Args = [_] -> N is NArgs + 1 ; N = NArgs )
    ;   N = 0
    ).

:- initialization(main, main).
